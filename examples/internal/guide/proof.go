package guide

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sandnet/sandnet/internal/probe"
	"github.com/sandnet/sandnet/netns"
)

// Ping sends ICMP echo requests to addr from inside ns, with a socket this
// program opens there (no ping program needed), and checks that the outcome
// is the one wanted, saying so. A wanted answer is waited for up to 5 s
// (after a failure the kernel retries ARP only after a while); an unwanted
// one is listened for 2 s.
//
// Equivalent to: ip netns exec NS ping -c 1 ADDR
func Ping(ctx context.Context, ns *netns.NS, addr string, want bool) error {
	dst, err := netip.ParseAddr(addr)
	if err != nil {
		return err
	}
	wait := 2 * time.Second
	if want {
		wait = 5 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err = probe.Ping(pctx, ns, dst)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case want && err != nil:
		return fmt.Errorf("%s cannot ping %s: %v", ns.Name(), addr, err)
	case !want && err == nil:
		return fmt.Errorf("%s pings %s, which it should not", ns.Name(), addr)
	case want:
		fmt.Printf("   ping %s -> %s: answered (ICMP echo from a socket in %s)\n", ns.Name(), addr, ns.Name())
	default:
		fmt.Printf("   ping %s -> %s: no answer, as expected\n", ns.Name(), addr)
	}
	return nil
}

// Echo serves TCP inside server on addr and dials it from client: msg must
// come back. A socket belongs to the namespace it is made in, so each side's
// socket is made inside its namespace (ns.Do) and used from here.
func Echo(client, server *netns.NS, addr netip.AddrPort, msg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := probe.Echo(ctx, client, server, addr, msg+"\n")
	if err != nil {
		return err
	}
	fmt.Printf("   TCP %s -> %s: echoed %q\n", client.Name(), addr, strings.TrimSpace(reply))
	return nil
}

// Reach proves that ns reaches addr with Ping. Where the ping program is
// installed it is shown too, as a person would check; the proof does not
// depend on it.
func Reach(ctx context.Context, ns *netns.NS, addr netip.Addr) error {
	Look(ctx, ns, "ping", "-c", "1", "-W", "2", addr.String())
	return Ping(ctx, ns, addr.String(), true)
}
