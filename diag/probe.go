package diag

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/netns"
)

// deadline is now+timeout, or ctx's deadline when that is sooner.
func deadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// Ping sends ICMP echo requests to dst from inside sb (a raw socket opened
// in sb) and returns nil when one is answered; two tries of timeout each.
//
// Equivalent to: ip netns exec SB ping -c 2 -W TIMEOUT DST
func Ping(ctx context.Context, sb *netns.NS, dst netip.Addr, timeout time.Duration) error {
	if !dst.Is4() {
		return fmt.Errorf("ping %s: only IPv4 is supported", dst)
	}
	var c net.PacketConn
	if err := sb.Do(func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return fmt.Errorf("opening an ICMP socket in %s: %w", sb, err)
	}
	defer c.Close()
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	for seq := uint16(1); seq <= 2; seq++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := c.WriteTo(echoRequest(id, seq), to); err != nil {
			return fmt.Errorf("sending echo to %s: %w", dst, err)
		}
		c.SetReadDeadline(deadline(ctx, timeout))
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break // timeout: try again
			}
			ip, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
			if ip.Unmap() == dst && n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
				return nil
			}
		}
	}
	return errors.New("no echo reply")
}

// echoRequest builds an ICMP echo request with its checksum.
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 8+16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "sandnet doctor!!")
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[2:], ^uint16(sum))
	return b
}

// Query sends one DNS query (UDP, port 53) from inside sb to server and
// returns the answer, whatever its rcode. qtype is "A", "AAAA", "NS"...
//
// Equivalent to: ip netns exec SB dig @SERVER NAME QTYPE +tries=1 +time=TIMEOUT
func Query(ctx context.Context, sb *netns.NS, server netip.Addr, name, qtype string, timeout time.Duration) (*dns.Msg, error) {
	var conn net.Conn
	if err := sb.Do(func() (err error) {
		conn, err = net.Dial("udp", netip.AddrPortFrom(server, 53).String())
		return err
	}); err != nil {
		return nil, err
	}
	defer conn.Close()
	co := &dns.Conn{Conn: conn}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.StringToType[qtype])
	q.RecursionDesired = true
	var lastErr error
	for range 2 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		co.SetDeadline(deadline(ctx, timeout))
		if err := co.WriteMsg(q); err != nil {
			return nil, err
		}
		for {
			m, err := co.ReadMsg()
			if err != nil {
				lastErr = err
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					lastErr = errors.New("timeout")
				}
				break
			}
			if m.Id == q.Id {
				return m, nil
			}
		}
		if errors.Is(lastErr, unix.ECONNREFUSED) {
			return nil, errors.New("connection refused: nothing listens on port 53")
		}
	}
	return nil, lastErr
}

func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		}
	}
	return out
}

func rcodeName(m *dns.Msg) string {
	if s, ok := dns.RcodeToString[m.Rcode]; ok {
		return s
	}
	return fmt.Sprint(m.Rcode)
}

// PortState returns the STP state of bridge port index in ns: disabled,
// listening, learning, forwarding or blocking (see bridge.PortState).
//
// Equivalent to: bridge -n NS link show dev PORT
func PortState(ns *netns.NS, index int) (string, error) { return bridge.PortState(ns, index) }
