// 02-veth-pair: the virtual cable between two namespaces. Run as root:
//
//	go run ./examples/02-veth-pair [-keep]
//
// A veth pair is two Ethernet interfaces joined back to back: a frame sent
// into one comes out of the other. Its two ends can live in different
// namespaces, which makes it the cable that connects a container to the rest
// of the world. Here it connects two fresh namespaces, a and b, directly.
package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

func main() { guide.Main("ex02", run) }

func run(ctx context.Context, lab *guide.Lab) error {
	guide.Step(1, "two namespaces, a and b (see 01-namespaces)")
	a, err := lab.NewNS(ctx, "a")
	if err != nil {
		return err
	}
	b, err := lab.NewNS(ctx, "b")
	if err != nil {
		return err
	}

	guide.Step(2, "one veth pair: veth-a in a, veth-b in b")
	guide.Say("The pair is made in a, and its peer is born straight inside b: one request,\n" +
		"so the peer never shows up in a under a temporary name. numtxqueues 1: one\n" +
		"queue each way, all a veth uses (ip link's default makes one per CPU, which\n" +
		"the kernel then trims, waiting for every CPU to take note).")
	if _, err := veth.Create(ctx, a, veth.Pair{Name: "veth-a", PeerName: "veth-b", PeerNS: b}); err != nil {
		return err
	}
	// Each end knows its peer's interface index (IFLA_LINK): that is how you
	// find which interface in the host belongs to which container.
	ia, pa, err := indexes(a, "veth-a")
	if err != nil {
		return err
	}
	ib, pb, err := indexes(b, "veth-b")
	if err != nil {
		return err
	}
	guide.Say("seen from a: veth-a is ifindex %d and its peer is ifindex %d (in another namespace)", ia, pa)
	guide.Say("seen from b: veth-b is ifindex %d and its peer is ifindex %d", ib, pb)
	if _, err := guide.Look(ctx, a, "ip", "-o", "link", "show", "veth-a"); err != nil {
		return err
	}
	if _, err := guide.Look(ctx, b, "ip", "-o", "link", "show", "veth-b"); err != nil {
		return err
	}
	if pa != ib || pb != ia {
		return fmt.Errorf("peer indexes do not point at each other: a %d->%d, b %d->%d", ia, pa, ib, pb)
	}
	guide.OK("each end points at the other: `veth-a@if%d` in a, `veth-b@if%d` in b", ib, ia)
	guide.Say("Interface indexes are counted per namespace, so equal numbers are common;\n" +
		"`link-netns` says which namespace the peer index belongs to.")

	guide.Step(3, "addresses on both ends, and both ends up")
	guide.Say("Same subnet on both ends, so each reaches the other directly. Adding an\n" +
		"address also makes the kernel add the route to its subnet (proto kernel).")
	addrA, addrB := netip.MustParsePrefix("10.20.0.1/24"), netip.MustParsePrefix("10.20.0.2/24")
	for _, s := range []struct {
		ns   *netns.NS
		dev  string
		addr netip.Prefix
	}{{a, "veth-a", addrA}, {b, "veth-b", addrB}} {
		if err := iface.AddAddr(ctx, s.ns, s.dev, s.addr); err != nil {
			return err
		}
		if err := iface.Up(ctx, s.ns, s.dev); err != nil {
			return err
		}
	}
	if _, err := guide.Look(ctx, b, "ip", "addr", "show", "veth-b"); err != nil {
		return err
	}
	if _, err := guide.Look(ctx, b, "ip", "route"); err != nil {
		return err
	}

	guide.Step(4, "proof: a pings b across the cable")
	if err := guide.Reach(ctx, a, addrB.Addr()); err != nil {
		return err
	}
	guide.OK("a (%s) and b (%s) talk over the veth pair", addrA.Addr(), addrB.Addr())

	if lab.Keep {
		return nil // leave the pair in place for inspection
	}
	guide.Step(5, "deleting one end deletes the pair")
	if err := veth.Delete(ctx, a, "veth-a"); err != nil {
		return err
	}
	nl, err := b.Netlink()
	if err != nil {
		return err
	}
	if _, err := nl.LinkByName("veth-b"); err == nil {
		return fmt.Errorf("veth-b is still in b after deleting veth-a")
	}
	guide.OK("veth-b vanished from b with it")
	fmt.Println("\n02-veth-pair: OK")
	return nil
}

// indexes returns the interface index of the link called name in ns and the
// index of its peer, as the kernel reports them.
func indexes(ns *netns.NS, name string) (index, peer int, err error) {
	nl, err := ns.Netlink()
	if err != nil {
		return 0, 0, err
	}
	l, err := nl.LinkByName(name)
	if err != nil {
		return 0, 0, fmt.Errorf("finding %s in %s: %w", name, ns, err)
	}
	return l.Attrs().Index, l.Attrs().ParentIndex, nil
}
