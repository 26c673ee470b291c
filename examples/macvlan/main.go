// Macvlan: sandboxes as machines of their own on the physical network.
// Run as root:
//
//	go run ./examples/macvlan
//
// It builds a small lab out of namespaces (the machine's own network is
// never touched): a "switch" (a bridge), a "router" and a "host" plugged
// into it by veth cables, and two sandboxes. The host puts both sandboxes on
// the segment with the macvlan driver: each gets a macvlan device on the
// host's eth0, born inside the sandbox as eth0, with its own MAC and an
// address of the segment, and the router as its gateway. It proves they
// work with ping and TCP, shows the one thing macvlan cannot do (the host
// reaching its own sandboxes) and the usual workaround. Every step prints
// the command that does the same; everything is removed at the end, also on
// Ctrl-C.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/macvlan"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

func main() { guide.Main("mv", run) }

func run(ctx context.Context, lab *guide.Lab) error {
	// guide.Main removes the lab however run ends (error, panic, Ctrl-C),
	// /etc/netns files included. This lab is not kept: -keep is ignored.
	lab.Keep = false
	guide.Step(1, "the lab: a switch, a router, a host and two sandboxes, each a namespace")
	ns := map[string]*netns.NS{}
	for _, role := range []string{"switch", "router", "host", "a", "b"} {
		n, err := lab.NewNS(ctx, role)
		if err != nil {
			return err
		}
		ns[role] = n
	}

	guide.Step(2, "the physical network 192.168.50.0/24: a bridge plays the switch, veth pairs play the cables")
	if _, _, err := bridge.Ensure(ctx, ns["switch"], bridge.Config{Name: "sw"}); err != nil {
		return err
	}
	for i, m := range []struct{ role, addr string }{{"router", "192.168.50.1/24"}, {"host", "192.168.50.11/24"}} {
		port := fmt.Sprintf("port%d", i+1)
		if _, err := veth.Create(ctx, ns["switch"], veth.Pair{Name: port, PeerName: "eth0", PeerNS: ns[m.role], MasterName: "sw", Master: linkIndex(ns["switch"], "sw"), Up: true}); err != nil {
			return err
		}
		if err := sh(ctx, ns[m.role], "ip", "addr", "add", m.addr, "dev", "eth0"); err != nil {
			return err
		}
		if err := sh(ctx, ns[m.role], "ip", "link", "set", "eth0", "up"); err != nil {
			return err
		}
	}

	dir, err := os.MkdirTemp("", "sandnet-macvlan-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	host, err := sandnet.NewHostNS(ns["host"], sandnet.HostConfig{StateDir: dir})
	if err != nil {
		return err
	}
	defer host.Close()

	// The segment's subnet and router; the host hands out only .64-.79, so it
	// never gives away an address another machine of the segment uses.
	network := sandnet.Network{
		Name: "physnet", Driver: sandnet.DriverMacvlan, Parent: "eth0", MacvlanMode: "bridge",
		Subnet:  netip.MustParsePrefix("192.168.50.0/24"),
		Gateway: netip.MustParseAddr("192.168.50.1"),
		IPRange: netip.MustParsePrefix("192.168.50.64/28"),
	}
	var eps []*sandnet.Endpoint
	for i, role := range []string{"a", "b"} {
		fmt.Printf("\n== %d. attach sandbox %s: a macvlan device on the host's eth0, created straight inside the sandbox as eth0\n", i+3, role)
		ep, err := host.AttachNS(ctx, ns[role], network, sandnet.AttachOptions{})
		if err != nil {
			return err
		}
		eps = append(eps, ep)
		fmt.Printf("   %s: eth0 %s, its own MAC %s, gateway %s (the router, not the host)\n", role, ep.Addresses[0], ep.MAC, ep.Gateway)
	}
	a, b := ns["a"], ns["b"]

	guide.Step(5, "proof: a pings the router and b; TCP from a to b")
	if err := guide.Ping(ctx, a, "192.168.50.1", true); err != nil {
		return err
	}
	if err := guide.Ping(ctx, a, eps[1].Addr(false).String(), true); err != nil {
		return err
	}
	if err := guide.Echo(a, b, netip.AddrPortFrom(eps[1].Addr(false), 8080), "hello over the physical network"); err != nil {
		return err
	}
	out, _ := ns["router"].Command(ctx, "ip", "neigh", "show", "dev", "eth0").CombinedOutput()
	fmt.Printf("   the router's ARP table: sandbox a is a machine with its own MAC there:\n%s", indent(string(out)))

	guide.Step(6, "the limitation: the host itself cannot reach its macvlan sandboxes through eth0")
	if err := guide.Ping(ctx, ns["host"], eps[0].Addr(false).String(), false); err != nil {
		return err
	}
	fmt.Println("   (the kernel gives frames from eth0 to its macvlan devices only when they come from the wire)")

	guide.Step(7, "the workaround: a macvlan for the host too, in bridge mode, and a route to the sandboxes through it")
	if _, err := macvlan.Create(ctx, ns["host"], macvlan.Link{Name: "mv-host", Parent: "eth0", Mode: "bridge"}); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"ip", "addr", "add", "192.168.50.62/32", "dev", "mv-host"},
		{"ip", "link", "set", "mv-host", "up"},
		{"ip", "route", "add", network.IPRange.String(), "dev", "mv-host"},
	} {
		if err := sh(ctx, ns["host"], args...); err != nil {
			return err
		}
	}
	if err := guide.Ping(ctx, ns["host"], eps[0].Addr(false).String(), true); err != nil {
		return err
	}
	if err := macvlan.Delete(ctx, ns["host"], "mv-host"); err != nil {
		return err
	}

	guide.Step(8, "detach both (their macvlan devices are deleted) and remove the network")
	for _, ep := range eps {
		if err := host.Detach(ctx, ep); err != nil {
			return err
		}
	}
	if err := host.RemoveNetwork(ctx, network.Name); err != nil {
		return err
	}
	fmt.Println("\nmacvlan: OK, the sandboxes were machines on the physical network")
	return nil
}

// sh runs an ip command inside ns, printing it first.
func sh(ctx context.Context, ns *netns.NS, args ...string) error {
	explain.Say(ctx, "%s", ns.Shell(strings.Join(args, " ")))
	if out, err := ns.Command(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func linkIndex(ns *netns.NS, name string) int {
	nl, err := ns.Netlink()
	if err != nil {
		return 0
	}
	l, err := nl.LinkByName(name)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString("     " + l + "\n")
	}
	return b.String()
}
