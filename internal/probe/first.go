package probe

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/sandnet/sandnet/netns"
)

// FirstWait is how long a first packet may take: below the kernel's first
// retransmission of a TCP SYN and its first ARP retry (both 1 s), so an
// answer within it is the answer to the first packet. Tests and the
// benchmark use it with FirstEcho and Connect to tell "answered at once"
// from "answered after a retry".
const FirstWait = 900 * time.Millisecond

// FirstEcho sends one ICMP echo request (IPv4) from inside ns to dst and
// waits up to wait for the reply; it returns the round trip. Unlike Ping it
// never sends a second request.
//
// Equivalent to: ip netns exec NS ping -c 1 -W WAIT DST
func FirstEcho(ns *netns.NS, dst netip.Addr, wait time.Duration) (time.Duration, error) {
	var c net.PacketConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return 0, fmt.Errorf("echo to %s: %w", dst, err)
	}
	defer c.Close()
	id := uint16(rand.Uint32())
	msg := echoRequest(8, id, 1, 16, true)
	t0 := time.Now()
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return 0, fmt.Errorf("echo to %s: %w", dst, err)
	}
	c.SetReadDeadline(t0.Add(wait))
	buf := make([]byte, 1500)
	for {
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			return 0, fmt.Errorf("first echo to %s: no reply: %w", dst, err)
		}
		ip, _ := from.(*net.IPAddr)
		if k >= 8 && buf[0] == 0 && uint16(buf[4])<<8|uint16(buf[5]) == id && ip != nil && ip.IP.Equal(dst.AsSlice()) {
			return time.Since(t0), nil
		}
	}
}

// Connect opens one TCP connection from inside ns to dst and closes it,
// giving it wait: with a wait below 1 s, a lost SYN is never sent again.
func Connect(ns *netns.NS, dst netip.AddrPort, wait time.Duration) (time.Duration, error) {
	var d time.Duration
	err := ns.Do(func() error {
		t0 := time.Now()
		c, err := (&net.Dialer{Timeout: wait}).Dial("tcp", dst.String())
		if err != nil {
			return fmt.Errorf("first connect to %s: %w", dst, err)
		}
		d = time.Since(t0)
		return c.Close()
	})
	return d, err
}

// Listen opens a TCP listener on addr inside ns that accepts connections
// and closes them at once; Close the listener to stop it.
func Listen(ns *netns.NS, addr netip.AddrPort) (net.Listener, error) {
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}
