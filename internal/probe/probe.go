// Package probe checks reachability from inside a network namespace with
// this process's own sockets: an ICMP echo (a raw socket opened inside the
// namespace) and a TCP echo. No ping program is needed, so sandnet's tests,
// examples and diagnostics run on a machine that has only the kernel.
//
// FirstEcho, Connect and Listen (first.go) send one first packet and time
// its answer, for tests and the benchmark of first-packet behaviour.
//
// Root (CAP_NET_RAW) is needed for Ping and FirstEcho. All functions are safe for
// concurrent use; they enter the namespace only to open their sockets
// (netns.Do), and use them from the calling goroutine.
package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/netns"
)

// Interval is the time between two echo requests of Ping.
const Interval = 200 * time.Millisecond

// Ping sends ICMP (or ICMPv6) echo requests from inside ns to dst, one
// every Interval, and returns nil at the first matching reply, or an error
// when ctx ends first. Give ctx a deadline.
//
// Equivalent to: ip netns exec NS ping -w SECONDS DST (stopping at the first reply)
func Ping(ctx context.Context, ns *netns.NS, dst netip.Addr) error {
	return ping(ctx, ns, dst, 16, false)
}

// PingDF is Ping with payload bytes of data in each request and, for IPv4,
// the don't-fragment bit set: a request larger than the path MTU is not
// fragmented but dropped (or refused), so it proves an MTU end to end.
//
// Equivalent to: ip netns exec NS ping -M do -s PAYLOAD DST
func PingDF(ctx context.Context, ns *netns.NS, dst netip.Addr, payload int) error {
	return ping(ctx, ns, dst, payload, true)
}

func ping(ctx context.Context, ns *netns.NS, dst netip.Addr, payload int, df bool) error {
	if !dst.IsValid() {
		return errors.New("ping: no address")
	}
	network, reqType, replyType := "ip4:icmp", byte(8), byte(0)
	dst = dst.Unmap()
	if dst.Is6() {
		network, reqType, replyType = "ip6:ipv6-icmp", 128, 129
	}
	var c net.PacketConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenPacket(network, "")
		return err
	}); err != nil {
		return fmt.Errorf("opening an ICMP socket in %s: %w", ns, err)
	}
	defer c.Close()
	if df {
		if err := setDF(c, dst.Is4()); err != nil {
			return fmt.Errorf("setting don't-fragment on the ICMP socket: %w", err)
		}
	}
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	var lastErr error
	for seq := uint16(1); ; seq++ {
		if err := ctx.Err(); err != nil {
			if lastErr != nil {
				return fmt.Errorf("no echo reply from %s (%v): %w", dst, lastErr, err)
			}
			return fmt.Errorf("no echo reply from %s: %w", dst, err)
		}
		if _, err := c.WriteTo(echoRequest(reqType, id, seq, payload, dst.Is4()), to); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// An unreachable network fails at once; keep trying until ctx ends.
			lastErr = err
			select {
			case <-ctx.Done():
			case <-time.After(Interval):
			}
			continue
		}
		c.SetReadDeadline(time.Now().Add(Interval))
		if ctx.Err() != nil {
			c.SetReadDeadline(time.Now())
		}
		for {
			n, src, err := c.ReadFrom(buf)
			if err != nil {
				break // deadline: send the next request
			}
			ip, ok := src.(*net.IPAddr)
			if !ok || n < 8 || buf[0] != replyType {
				continue
			}
			from, _ := netip.AddrFromSlice(ip.IP)
			if from.Unmap() == dst && binary.BigEndian.Uint16(buf[4:]) == id {
				return nil
			}
		}
	}
}

// echoRequest builds an echo request; the kernel fills in ICMPv6 checksums.
func echoRequest(typ byte, id, seq uint16, payload int, v4 bool) []byte {
	b := make([]byte, 8+max(payload, 16))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "sandnet probe...")
	if v4 {
		binary.BigEndian.PutUint16(b[2:], checksum(b))
	}
	return b
}

// setDF makes the kernel send c's packets unfragmented, whatever their size
// (IP_PMTUDISC_DO).
func setDF(c net.PacketConn, v4 bool) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if v4 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
		}
	})
	return errors.Join(err, serr)
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Echo listens on TCP addr inside server, dials it from inside client and
// checks that msg comes back; it returns the reply. Each socket is opened
// inside its namespace and used from here.
//
// Equivalent to: ip netns exec SERVER socat TCP-LISTEN:PORT EXEC:cat &
// echo MSG | ip netns exec CLIENT nc ADDR PORT
func Echo(ctx context.Context, client, server *netns.NS, addr netip.AddrPort, msg string) (string, error) {
	var ln net.Listener
	if err := server.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		return "", fmt.Errorf("listening on %s in %s: %w", addr, server, err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.Copy(c, c)
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 3 * time.Second}
	var c net.Conn
	if err := client.Do(func() (err error) { c, err = d.DialContext(ctx, "tcp", addr.String()); return err }); err != nil {
		return "", fmt.Errorf("connecting from %s to %s: %w", client, addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", fmt.Errorf("sending to %s: %w", addr, err)
	}
	reply := make([]byte, len(msg))
	if _, err := io.ReadFull(c, reply); err != nil {
		return "", fmt.Errorf("reading the echo from %s: %w", addr, err)
	}
	if string(reply) != msg {
		return string(reply), fmt.Errorf("%s echoed %q, want %q", addr, reply, msg)
	}
	return string(reply), nil
}
