package guide

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/sandnet/sandnet/netns"
)

// Ping pings addr from inside ns and checks that the outcome is the one
// wanted, saying so. A wanted answer gets a few tries: after a failure the
// kernel retries ARP only after a while.
func Ping(ctx context.Context, ns *netns.NS, addr string, want bool) error {
	tries := 1
	if want {
		tries = 5
	}
	var (
		out []byte
		err error
	)
	for range tries {
		out, err = ns.Command(ctx, "ping", "-c", "1", "-W", "1", "-w", "2", addr).CombinedOutput()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case want && err != nil:
		return fmt.Errorf("%s cannot ping %s: %v\n%s", ns.Name(), addr, err, out)
	case !want && err == nil:
		return fmt.Errorf("%s pings %s, which it should not", ns.Name(), addr)
	case want:
		fmt.Printf("   ping %s -> %s: answered\n", ns.Name(), addr)
	default:
		fmt.Printf("   ping %s -> %s: no answer, as expected\n", ns.Name(), addr)
	}
	return nil
}

// Echo serves TCP inside server on addr and dials it from client: msg must
// come back. A socket belongs to the namespace it is made in, so each side's
// socket is made inside its namespace (ns.Do) and used from here.
func Echo(client, server *netns.NS, addr netip.AddrPort, msg string) error {
	var ln net.Listener
	if err := server.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	var c net.Conn
	if err := client.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr.String(), 3*time.Second); return err }); err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg += "\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	reply := make([]byte, len(msg))
	if _, err := io.ReadFull(c, reply); err != nil {
		return err
	}
	fmt.Printf("   TCP %s -> %s: echoed %q\n", client.Name(), addr, strings.TrimSpace(string(reply)))
	return nil
}
