package nettest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

// The upstream link: the lab host's "wan0" (UpstreamHostAddr) to the
// upstream namespace's "eth0" (UpstreamAddr), a documentation range that
// no lab network picks by default.
var (
	UpstreamSubnet   = netip.MustParsePrefix("203.0.113.0/24")
	UpstreamAddr     = netip.MustParseAddr("203.0.113.1")
	UpstreamHostAddr = netip.MustParseAddr("203.0.113.2")
)

const (
	upstreamNetwork = "upstream" // the pseudo network of the upstream endpoint
	upstreamHostIf  = "wan0"
)

// Upstream returns the lab's "outside world": a namespace joined to the
// host by a veth (host side wan0, UpstreamHostAddr; upstream side eth0,
// UpstreamAddr), with the host's default route pointing to it. The upstream
// has no route back to the lab's networks: replies reach sandboxes only
// through the host's masquerade (or routes the test adds). It is made on
// first use and is a Sandbox like the others (Listen, Dial, Ping...), but
// not in Sandboxes().
func (l *Lab) Upstream() *Sandbox {
	l.helper()
	l.mu.Lock()
	up := l.upstream
	l.mu.Unlock()
	if up != nil {
		return up
	}
	ns, err := netns.Create(l.ctx, l.nsName("upstream"))
	if err != nil {
		l.fatalf("making the upstream namespace: %v", err)
		return nil
	}
	s := &Sandbox{Name: "upstream", NS: ns, lab: l}
	l.mu.Lock()
	l.upstream = s
	l.sandboxes[s.Name] = s
	l.order = append(l.order, s)
	l.mu.Unlock()
	ep := &sandnet.Endpoint{
		Network: upstreamNetwork, SandboxID: "upstream", NetNS: ns.Path(), NetNSInode: ns.Inode(),
		IfName: "eth0", HostIfName: upstreamHostIf,
		Addresses: []netip.Prefix{netip.PrefixFrom(UpstreamAddr, UpstreamSubnet.Bits())},
	}
	err = l.wire(link{l.NS, upstreamHostIf}, netip.PrefixFrom(UpstreamHostAddr, UpstreamSubnet.Bits()),
		link{ns, "eth0"}, ep.Addresses[0])
	if err == nil {
		err = addRoute(l.ctx, l.NS, upstreamHostIf, netip.PrefixFrom(netip.IPv4Unspecified(), 0), UpstreamAddr)
	}
	if err != nil {
		l.fatalf("making the upstream: %v", err)
		return nil
	}
	s.mu.Lock()
	s.eps = append(s.eps, ep)
	s.mu.Unlock()
	return s
}

// wire makes a veth pair between two namespaces, addresses both ends (an
// invalid prefix: none) and brings them up.
func (l *Lab) wire(a link, aAddr netip.Prefix, b link, bAddr netip.Prefix) error {
	if _, err := veth.Create(l.ctx, a.ns, veth.Pair{Name: a.name, PeerName: b.name, PeerNS: b.ns, Up: true}); err != nil {
		return err
	}
	for _, end := range []struct {
		lk   link
		addr netip.Prefix
	}{{a, aAddr}, {b, bAddr}} {
		if end.addr.IsValid() {
			if err := addAddr(l.ctx, end.lk, end.addr); err != nil {
				return err
			}
		}
		if err := setLink(l.ctx, end.lk, true); err != nil {
			return err
		}
	}
	return nil
}

// addAddr is: ip addr add ADDR dev NAME
func addAddr(ctx context.Context, lk link, p netip.Prefix) error {
	nl, err := lk.ns.Netlink()
	if err != nil {
		return err
	}
	dev, err := nl.LinkByName(lk.name)
	if err != nil {
		return fmt.Errorf("finding %s in %s: %w", lk.name, lk.ns, err)
	}
	explain.Say(ctx, "%s", lk.ns.Shell(fmt.Sprintf("ip addr add %s dev %s", p, lk.name)))
	if err := nl.AddrAdd(dev, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("adding %s to %s in %s: %w", p, lk.name, lk.ns, err)
	}
	return nil
}

// addRoute is: ip route replace DST via GW dev NAME
func addRoute(ctx context.Context, ns *netns.NS, dev string, dst netip.Prefix, gw netip.Addr) error {
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	lk, err := nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("finding %s in %s: %w", dev, ns, err)
	}
	explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("ip route replace %s via %s dev %s", dst, gw, dev)))
	if err := nl.RouteReplace(&netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipNet(dst), Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("adding route %s via %s in %s: %w", dst, gw, ns, err)
	}
	return nil
}

// restoreRoutes puts back the routes a downed interface lost.
func (s *Sandbox) restoreRoutes(dev string, routes []sandnet.Route) error {
	for _, r := range routes {
		if err := addRoute(s.lab.ctx, s.NS, dev, r.Dst, r.Via); err != nil {
			return err
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// UnderlayLink is the name of a lab host's uplink to an underlay switch.
const UnderlayLink = "ul0"

// Underlay is a switch joining lab hosts, the way a physical network joins
// machines: a namespace holding a bridge, and for each joined lab host an
// uplink veth (UnderlayLink in the lab host, with an address from Subnet).
// Overlay (VXLAN) and macvlan tests build on it.
type Underlay struct {
	// NS is the switch's namespace, "snt-ID-switch".
	NS *netns.NS
	// Subnet is the underlay's address range; the switch itself has none.
	Subnet netip.Prefix

	t       testing.TB
	ctx     context.Context
	id      string
	mu      sync.Mutex
	next    netip.Addr
	members map[*Lab]Uplink
}

// Uplink is one lab host's connection to an underlay.
type Uplink struct {
	// Name is the interface in the lab host (UnderlayLink); Port is its
	// peer, a port of the switch's bridge.
	Name, Port string
	// Addr is the lab host's address on the underlay.
	Addr netip.Prefix
}

// NewUnderlay makes a switch with subnet (default 192.168.77.0/24) and
// removes it when t ends. Join connects lab hosts to it.
func NewUnderlay(t testing.TB, subnet netip.Prefix) *Underlay {
	t.Helper()
	ensurePrivileged(t)
	if err := setupChild(); err != nil {
		t.Fatalf("nettest: %v", err)
	}
	if !subnet.IsValid() {
		subnet = netip.MustParsePrefix("192.168.77.0/24")
	}
	u := &Underlay{Subnet: subnet.Masked(), t: t, ctx: context.WithoutCancel(t.Context()), id: randomID(), members: map[*Lab]Uplink{}}
	u.next = u.Subnet.Addr().Next()
	ns, err := netns.Create(u.ctx, Prefix+u.id+"-switch")
	if err != nil {
		t.Fatalf("nettest: making the underlay switch: %v", err)
	}
	u.NS = ns
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Delete(context.Background(), ns.Name()); err != nil {
			t.Errorf("nettest: removing the underlay switch: %v", err)
		}
	})
	if _, _, err := bridge.Ensure(u.ctx, ns, bridge.Config{Name: "br0"}); err != nil {
		t.Fatalf("nettest: making the underlay switch: %v", err)
	}
	return u
}

// Join connects lab's host to the switch with an uplink and the next free
// address of the subnet, and turns IPv4 forwarding on in the lab host (so
// that it can route for its sandboxes, as a container host does).
func (u *Underlay) Join(lab *Lab) Uplink {
	u.t.Helper()
	u.mu.Lock()
	if up, ok := u.members[lab]; ok {
		u.mu.Unlock()
		return up
	}
	addr := u.next
	u.next = addr.Next()
	u.mu.Unlock()
	if !u.Subnet.Contains(addr) {
		u.t.Fatalf("nettest: underlay %s is full", u.Subnet)
	}
	up := Uplink{Name: UnderlayLink, Port: "p-" + lab.id, Addr: netip.PrefixFrom(addr, u.Subnet.Bits())}
	err := lab.wire(link{u.NS, up.Port}, netip.Prefix{}, link{lab.NS, up.Name}, up.Addr)
	if err == nil {
		err = bridge.AddPort(u.ctx, u.NS, "br0", up.Port)
	}
	if err == nil {
		_, err = lab.NS.Sysctl("net.ipv4.ip_forward", "1")
	}
	if err != nil {
		u.t.Fatalf("nettest: joining lab %s to the underlay: %v", lab.id, err)
	}
	u.mu.Lock()
	u.members[lab] = up
	u.mu.Unlock()
	return up
}

// Uplink returns lab's uplink, if it joined.
func (u *Underlay) Uplink(lab *Lab) (Uplink, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, ok := u.members[lab]
	return up, ok
}

// Route adds, on every joined lab host, a route to each other lab's
// networks via that lab's underlay address: a routed multi-host topology
// where sandboxes on different hosts reach each other without NAT or
// overlay. The labs' subnets must not overlap, and their networks must be
// Routed (sandnet.Network.Routed): a default network, like Docker's, drops
// traffic routed straight to its sandboxes.
func (u *Underlay) Route() {
	u.t.Helper()
	u.mu.Lock()
	members := make(map[*Lab]Uplink, len(u.members))
	for l, up := range u.members {
		members[l] = up
	}
	u.mu.Unlock()
	var errs []error
	for dst, dstUp := range members {
		nets, err := dst.Host.Networks()
		if err != nil {
			u.t.Fatalf("nettest: %v", err)
		}
		for src := range members {
			if src == dst {
				continue
			}
			for _, n := range nets {
				for _, p := range []netip.Prefix{n.Subnet} {
					if p.IsValid() {
						errs = append(errs, addRoute(u.ctx, src.NS, UnderlayLink, p, dstUp.Addr.Addr()))
					}
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		u.t.Fatalf("nettest: routing the underlay: %v", err)
	}
}

// Partition takes lab's switch port down: the lab host is cut off the
// underlay. Heal brings it back.
func (u *Underlay) Partition(lab *Lab) { u.t.Helper(); u.setPort(lab, false) }

// Heal undoes Partition.
func (u *Underlay) Heal(lab *Lab) { u.t.Helper(); u.setPort(lab, true) }

func (u *Underlay) setPort(lab *Lab, up bool) {
	u.t.Helper()
	ul, ok := u.Uplink(lab)
	if !ok {
		u.t.Fatalf("nettest: lab %s has not joined the underlay", lab.id)
	}
	if err := setLink(u.ctx, link{u.NS, ul.Port}, up); err != nil {
		u.t.Fatalf("nettest: %v", err)
	}
}
