// 04-addresses-and-routes: what an address gives a sandbox, and why it needs
// a default route to reach anything beyond its own subnet. Run as root:
//
//	go run ./examples/04-addresses-and-routes [-keep]
//
// The lab: a host namespace, a sandbox "web" cabled to it (10.40.0.0/24),
// and an "upstream" namespace playing the outside world on the host's other
// side (203.0.113.0/24, a documentation range). The host holds 10.40.0.1 on
// the sandbox side and 203.0.113.1 on the outside.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

func main() { guide.Main("ex04", run) }

var (
	gateway  = netip.MustParsePrefix("10.40.0.1/24")   // the host, sandbox side
	webAddr  = netip.MustParsePrefix("10.40.0.2/24")   // the sandbox
	uplink   = netip.MustParsePrefix("203.0.113.1/24") // the host, outside
	upstream = netip.MustParsePrefix("203.0.113.2/24") // the outside world
)

func run(ctx context.Context, lab *guide.Lab) error {
	guide.Step(1, "three namespaces: host, web (the sandbox), up (the outside world)")
	host, err := lab.NewNS(ctx, "host")
	if err != nil {
		return err
	}
	web, err := lab.NewNS(ctx, "web")
	if err != nil {
		return err
	}
	up, err := lab.NewNS(ctx, "up")
	if err != nil {
		return err
	}

	guide.Step(2, "cables: host<->web and host<->up, with an address at each end")
	if err := cable(ctx, host, "veth-web", gateway, web, webAddr); err != nil {
		return err
	}
	if err := cable(ctx, host, "veth-up", uplink, up, upstream); err != nil {
		return err
	}

	guide.Step(3, "what one address gave the sandbox")
	guide.Say("An address comes with its prefix length: 10.40.0.2/24 says \"10.40.0.0-255 are\n" +
		"on this link, ask for them directly (ARP)\". The kernel turns that into a route.")
	if _, err := guide.Look(ctx, web, "ip", "addr", "show", "eth0"); err != nil {
		return err
	}
	routes, err := guide.Look(ctx, web, "ip", "route")
	if err != nil {
		return err
	}
	if strings.Contains(routes, "default") {
		return fmt.Errorf("the sandbox has a default route already")
	}
	guide.Say("One route, added by the kernel (proto kernel): the subnet, straight out of eth0.")
	if err := ping(ctx, web, gateway.Addr()); err != nil {
		return err
	}
	guide.OK("inside its subnet the sandbox reaches the host (%s)", gateway.Addr())

	guide.Step(4, "beyond the subnet there is no route")
	guide.Say("Ask the kernel which way it would send a packet to the host's outside address:")
	if _, err := guide.Look(ctx, web, "ip", "route", "get", uplink.Addr().String()); err == nil {
		return fmt.Errorf("the kernel found a route to %s without a default route", uplink.Addr())
	}
	if err := ping(ctx, web, uplink.Addr()); err == nil {
		return fmt.Errorf("ping to %s worked without a route", uplink.Addr())
	}
	guide.OK("\"Network is unreachable\": the packet is refused before it leaves, not lost on the way")

	guide.Step(5, "the default route: everything else goes to the gateway")
	guide.Say("This is what Docker adds in every container: default via the bridge's address.")
	if err := iface.AddRoute(ctx, web, iface.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: gateway.Addr(), Dev: "eth0"}); err != nil {
		return err
	}
	got, err := guide.Look(ctx, web, "ip", "route", "get", uplink.Addr().String())
	if err != nil {
		return err
	}
	if !strings.Contains(got, "via "+gateway.Addr().String()) {
		return fmt.Errorf("route get %s does not go via %s: %s", uplink.Addr(), gateway.Addr(), got)
	}
	if err := ping(ctx, web, uplink.Addr()); err != nil {
		return err
	}
	guide.OK("the kernel now sends %s via %s, and the host answers", uplink.Addr(), gateway.Addr())
	guide.Say("Getting past the host, to %s, takes two more things: the host must forward\n"+
		"packets (ip_forward) and the outside must find the way back, which is what\n"+
		"masquerading does: see 06-nat-and-ports.", upstream.Addr())
	fmt.Println("\n04-addresses-and-routes: OK")
	return nil
}

// cable links namespace a (interface name, address aAddr) to b (eth0,
// bAddr) with a veth pair, addresses both ends and brings them up.
func cable(ctx context.Context, a *netns.NS, name string, aAddr netip.Prefix, b *netns.NS, bAddr netip.Prefix) error {
	if _, err := veth.Create(ctx, a, veth.Pair{Name: name, PeerName: "eth0", PeerNS: b}); err != nil {
		return err
	}
	for _, end := range []struct {
		ns   *netns.NS
		dev  string
		addr netip.Prefix
	}{{a, name, aAddr}, {b, "eth0", bAddr}} {
		if err := iface.AddAddr(ctx, end.ns, end.dev, end.addr); err != nil {
			return err
		}
		if err := iface.Up(ctx, end.ns, end.dev); err != nil {
			return err
		}
	}
	return nil
}

func ping(ctx context.Context, from *netns.NS, to netip.Addr) error {
	return guide.Reach(ctx, from, to)
}
