package diag

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/netns"
)

// Socket is one listening socket inside the sandbox: a TCP socket in
// LISTEN state or an unconnected UDP socket.
type Socket struct {
	Proto string         `json:"proto"` // tcp, tcp6, udp, udp6
	Local netip.AddrPort `json:"local"`
	State string         `json:"state"`
	Inode uint64         `json:"inode"`
}

// ListeningSockets reads /proc/net/{tcp,tcp6,udp,udp6} as seen from inside
// sb (through /proc/thread-self, which follows the thread's namespace;
// /proc/self/net would show the main thread's).
//
// Equivalent to: ip netns exec SB ss -lntu
func ListeningSockets(sb *netns.NS) ([]Socket, error) {
	var (
		out  []Socket
		errs []error
	)
	err := sb.Do(func() error {
		for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
			s, err := readProcNet(proto)
			if err != nil && !errors.Is(err, os.ErrNotExist) { // no IPv6: no tcp6
				errs = append(errs, err)
			}
			out = append(out, s...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Proto[:3] != out[j].Proto[:3] {
			return out[i].Proto < out[j].Proto
		}
		return out[i].Local.Port() < out[j].Local.Port()
	})
	return out, errors.Join(errs...)
}

// tcpStates are the kernel's TCP states (include/net/tcp_states.h).
var tcpStates = map[uint64]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
	7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
}

func readProcNet(proto string) ([]Socket, error) {
	f, err := os.Open("/proc/thread-self/net/" + proto)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Socket
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 {
			continue
		}
		st, err := strconv.ParseUint(fl[3], 16, 8)
		if err != nil {
			continue
		}
		local, err1 := parseHexAddrPort(fl[1])
		remote, err2 := parseHexAddrPort(fl[2])
		if err1 != nil || err2 != nil {
			return out, fmt.Errorf("parsing /proc/net/%s: %w", proto, errors.Join(err1, err2))
		}
		tcp := proto[:3] == "tcp"
		if tcp && st != 10 || !tcp && remote.Port() != 0 {
			continue
		}
		ino, _ := strconv.ParseUint(fl[9], 10, 64)
		state := tcpStates[st]
		if !tcp {
			state = "UNCONN"
		}
		out = append(out, Socket{Proto: proto, Local: local, State: state, Inode: ino})
	}
	return out, sc.Err()
}

// parseHexAddrPort decodes /proc/net's "0100007F:1F90": the address as the
// kernel stores it (32-bit words in host byte order), the port in hex.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	b, err := hex.DecodeString(a)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(b); i += 4 {
		w := binary.NativeEndian.Uint32(b[i : i+4])
		binary.BigEndian.PutUint32(b[i:i+4], w)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	ip, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}
