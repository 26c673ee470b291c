package sandnet

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/macvlan"
	"github.com/sandnet/sandnet/netns"
)

var pfx = netip.MustParsePrefix

// labHost makes a namespace that plays a machine on the segment (eth0 with
// addr) and a Host over it with its own state dir.
func labHost(t *testing.T, seg *testns.Segment, tag string, addr string) *Host {
	t.Helper()
	ns := seg.Machine(t, tag, pfx(addr))
	return openTestHost(t, ns, HostConfig{StateDir: filepath.Join(t.TempDir(), "state")})
}

// mustPing waits up to 10 s for from to get an answer from to: a
// neighbour entry that failed while to was unreachable takes a few seconds
// to be probed again.
func mustPing(t *testing.T, from *netns.NS, to netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := testns.Ping(from, to.String())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot ping %s: %v", from, to, err)
		}
	}
}

func mustNotPing(t *testing.T, from *netns.NS, to netip.Addr) {
	t.Helper()
	if err := testns.Ping(from, to.String()); err == nil {
		t.Fatalf("%s pings %s, want no answer", from, to)
	}
}

// linksOf lists the non-loopback links in ns, "name:type".
func linksOf(t *testing.T, ns *netns.NS) []string {
	t.Helper()
	nl, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			out = append(out, l.Attrs().Name+":"+l.Type())
		}
	}
	return out
}

func macvlanNet(rng string) Network {
	return Network{
		Name: "phys", Driver: DriverMacvlan, Parent: "eth0",
		Subnet: pfx("192.168.50.0/24"), Gateway: netip.MustParseAddr("192.168.50.1"), IPRange: pfx(rng),
	}
}

// Two hosts and a router on one switch; sandboxes on both hosts get macvlan
// devices on eth0 and reach each other and the router.
func TestMacvlanAcrossHosts(t *testing.T) {
	ctx := context.Background()
	seg := testns.NewSegment(t, "sw")
	router := seg.Machine(t, "router", pfx("192.168.50.1/24"))
	h1 := labHost(t, seg, "h1", "192.168.50.11/24")
	h2 := labHost(t, seg, "h2", "192.168.50.12/24")

	a, b, c := testns.New(t, "a"), testns.New(t, "b"), testns.New(t, "c")
	epA := mustAttach(t, h1, a, macvlanNet("192.168.50.64/28"), AttachOptions{})
	epB := mustAttach(t, h1, b, macvlanNet("192.168.50.64/28"), AttachOptions{})
	epC := mustAttach(t, h2, c, macvlanNet("192.168.50.80/28"), AttachOptions{})
	if got := epC.Addr(false); !pfx("192.168.50.80/28").Contains(got) {
		t.Fatalf("host 2's sandbox got %s, outside its range", got)
	}
	if epA.Gateway != netip.MustParseAddr("192.168.50.1") || epA.MTU != 1500 || epA.HostIfName != "" {
		t.Fatalf("endpoint = %+v, want gateway 192.168.50.1, mtu 1500, no host interface", epA)
	}

	// eth0 inside is a macvlan in bridge mode with the endpoint's MAC.
	nl, _ := a.Netlink()
	l, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	mv, ok := l.(*netlink.Macvlan)
	if !ok || mv.Mode != netlink.MACVLAN_MODE_BRIDGE || mv.HardwareAddr.String() != epA.MAC {
		t.Fatalf("eth0 in a = %s mode %v mac %s, want macvlan bridge mac %s", l.Type(), mv.Mode, l.Attrs().HardwareAddr, epA.MAC)
	}
	// The host namespaces hold no interface for the sandboxes.
	for _, h := range []*Host{h1, h2} {
		if got := linksOf(t, h.NS()); len(got) != 1 {
			t.Fatalf("host %s links = %v, want only eth0", h.NS(), got)
		}
	}

	mustPing(t, a, netip.MustParseAddr("192.168.50.1"))  // the segment's router
	mustPing(t, a, epC.Addr(false))                      // a sandbox on the other host
	mustPing(t, a, epB.Addr(false))                      // a sandbox on the same host (bridge mode)
	mustPing(t, c, netip.MustParseAddr("192.168.50.11")) // the other host itself
	listenTCP(t, c, netip.AddrPortFrom(epC.Addr(false), 8080).String())
	if err := dialEcho(a, netip.AddrPortFrom(epC.Addr(false), 8080).String()); err != nil {
		t.Fatalf("TCP from host 1's sandbox to host 2's: %v", err)
	}
	// The router sees the sandbox's own MAC, not the host's.
	out := testns.Run(t, router, "ip", "neigh", "show", epA.Addr(false).String())
	if !strings.Contains(out, epA.MAC) {
		t.Fatalf("router's neighbour entry for %s = %q, want MAC %s", epA.Addr(false), out, epA.MAC)
	}

	for h, eps := range map[*Host][]*Endpoint{h1: {epA, epB}, h2: {epC}} {
		for _, ep := range eps {
			if err := h.Detach(ctx, ep); err != nil {
				t.Fatal(err)
			}
			if err := h.Detach(ctx, ep); err != nil {
				t.Fatalf("second detach: %v", err)
			}
		}
		if err := h.RemoveNetwork(ctx, "phys"); err != nil {
			t.Fatal(err)
		}
		if left := labResidue(t, h); len(left) > 0 {
			t.Fatalf("left behind: %v", left)
		}
	}
	for _, sb := range []*netns.NS{a, b, c} {
		if got := linksOf(t, sb); len(got) != 0 {
			t.Fatalf("sandbox %s still has %v", sb, got)
		}
	}
}

func TestMacvlanPrivateMode(t *testing.T) {
	seg := testns.NewSegment(t, "sw")
	seg.Machine(t, "router", pfx("192.168.50.1/24"))
	h := labHost(t, seg, "h1", "192.168.50.11/24")
	n := macvlanNet("192.168.50.64/28")
	n.MacvlanMode = macvlan.ModePrivate
	a, b := testns.New(t, "a"), testns.New(t, "b")
	mustAttach(t, h, a, n, AttachOptions{})
	epB := mustAttach(t, h, b, n, AttachOptions{})
	mustPing(t, a, netip.MustParseAddr("192.168.50.1"))
	mustNotPing(t, a, epB.Addr(false)) // private: no way between devices of one parent

	// Another mode on the same parent is refused, and so is passthru.
	for _, mode := range []string{macvlan.ModeBridge, macvlan.ModePassthru} {
		other := macvlanNet("192.168.51.0/28")
		other.Name, other.Subnet, other.Gateway, other.MacvlanMode = "other", pfx("192.168.51.0/24"), netip.Addr{}, mode
		_, err := h.AttachNS(context.Background(), testns.New(t, "c"), other, AttachOptions{})
		if !errors.Is(err, ErrInUse) {
			t.Fatalf("%s network on a parent used in private mode: err = %v, want ErrInUse", mode, err)
		}
	}
}

func TestMacvlanPassthruTakesTheParent(t *testing.T) {
	seg := testns.NewSegment(t, "sw")
	router := seg.Machine(t, "router", pfx("192.168.50.1/24"))
	h := labHost(t, seg, "h1", "192.168.50.11/24")
	n := macvlanNet("192.168.50.64/28")
	n.MacvlanMode = macvlan.ModePassthru
	a := testns.New(t, "a")
	ep := mustAttach(t, h, a, n, AttachOptions{})
	mustPing(t, a, netip.MustParseAddr("192.168.50.1"))
	_ = router
	_, err := h.AttachNS(context.Background(), testns.New(t, "b"), n, AttachOptions{})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second passthru sandbox: err = %v, want ErrInUse", err)
	}
	if err := h.Detach(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	if left := labResidue(t, h); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// A parent "eth0.50" is VLAN 50 on eth0: sandnet creates it and removes it
// with the network; traffic is tagged, so it reaches the router's VLAN 50.
func TestMacvlanVLANParent(t *testing.T) {
	ctx := context.Background()
	seg := testns.NewSegment(t, "sw")
	router := seg.Machine(t, "router")
	if out, err := testns.Try(router, "ip", "link", "add", "link", "eth0", "name", "eth0.50", "type", "vlan", "id", "50"); err != nil {
		t.Skipf("this kernel cannot make 802.1Q VLAN links (CONFIG_VLAN_8021Q): %s", out)
	}
	testns.Run(t, router, "ip", "addr", "add", "10.50.0.1/24", "dev", "eth0.50")
	testns.Run(t, router, "ip", "link", "set", "eth0.50", "up")
	h := labHost(t, seg, "h1", "192.168.50.11/24")

	n := Network{Name: "vlan50", Driver: DriverMacvlan, Parent: "eth0.50", Subnet: pfx("10.50.0.0/24")}
	a := testns.New(t, "a")
	ep := mustAttach(t, h, a, n, AttachOptions{})
	if !macvlan.OwnsVLAN(h.NS(), "eth0.50") {
		t.Fatal("eth0.50 was not created (or not marked as sandnet's)")
	}
	mustPing(t, a, netip.MustParseAddr("10.50.0.1"))
	// Untagged, the router does not answer on 10.50.0.1 for eth0.
	if err := h.Detach(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveNetwork(ctx, "vlan50"); err != nil {
		t.Fatal(err)
	}
	if got := linksOf(t, h.NS()); len(got) != 1 {
		t.Fatalf("host links after removing the network = %v, want only eth0 (the VLAN gone)", got)
	}

	// A VLAN the user made stays.
	testns.Run(t, h.NS(), "ip", "link", "add", "link", "eth0", "name", "eth0.50", "type", "vlan", "id", "50")
	testns.Run(t, h.NS(), "ip", "link", "set", "eth0.50", "up")
	ep = mustAttach(t, h, a, n, AttachOptions{})
	mustPing(t, a, netip.MustParseAddr("10.50.0.1"))
	if err := h.Detach(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveNetwork(ctx, "vlan50"); err != nil {
		t.Fatal(err)
	}
	if got := linksOf(t, h.NS()); len(got) != 2 {
		t.Fatalf("host links = %v, want eth0 and the user's eth0.50", got)
	}
}

func TestMacvlanErrors(t *testing.T) {
	ctx := context.Background()
	seg := testns.NewSegment(t, "sw")
	h := labHost(t, seg, "h1", "192.168.50.11/24")
	testns.Run(t, h.NS(), "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	sb := testns.New(t, "sb")
	base := macvlanNet("192.168.50.64/28")
	cases := []struct {
		name string
		edit func(*Network)
		want []error
	}{
		{"parent missing", func(n *Network) { n.Parent = "nope0" }, []error{macvlan.ErrParentNotFound, ErrNotFound}},
		{"parent down", func(n *Network) { n.Parent = "eth1" }, []error{macvlan.ErrParentDown, ErrInvalid}},
		{"vlan on missing parent", func(n *Network) { n.Parent = "nope0.7" }, []error{macvlan.ErrParentNotFound}},
		{"no parent", func(n *Network) { n.Parent = "" }, []error{ErrInvalid}},
		{"bad mode", func(n *Network) { n.MacvlanMode = "loud" }, []error{ErrInvalid}},
		{"bad vlan id", func(n *Network) { n.Parent = "eth0.5000" }, []error{ErrInvalid}},
		{"no subnet", func(n *Network) { n.Subnet, n.Gateway, n.IPRange = netip.Prefix{}, netip.Addr{}, netip.Prefix{} }, []error{ErrInvalid}},
		{"mtu above parent's", func(n *Network) { n.MTU = 9000 }, []error{ErrInvalid}},
		{"vni on macvlan", func(n *Network) { n.VNI = 5 }, []error{ErrInvalid}},
		{"ports", nil, []error{ErrInvalid}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := base
			opts := AttachOptions{}
			if tc.edit != nil {
				tc.edit(&n)
			} else {
				opts.Ports = []PortMapping{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}
			}
			_, err := h.AttachNS(ctx, sb, n, opts)
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
			}
			if got := linksOf(t, sb); len(got) != 0 {
				t.Fatalf("sandbox has %v after a failed attach", got)
			}
			h.RemoveNetwork(ctx, n.Name)
		})
	}
	if got := linksOf(t, h.NS()); len(got) != 3 {
		t.Fatalf("host links = %v, want eth0, eth1, eth1p only", got)
	}
	// A subnet that overlaps another network's is a conflict.
	if _, err := h.CreateNetwork(ctx, base); err != nil {
		t.Fatal(err)
	}
	other := base
	other.Name, other.Parent = "other", "eth0"
	other.Subnet, other.Gateway, other.IPRange = pfx("192.168.50.128/25"), netip.Addr{}, netip.Prefix{}
	if _, err := h.CreateNetwork(ctx, other); !errors.Is(err, ErrExists) {
		t.Fatalf("overlapping subnet: err = %v, want ErrExists", err)
	}
	if err := h.RemoveNetwork(ctx, base.Name); err != nil {
		t.Fatal(err)
	}
}

// The host cannot reach its own macvlan sandboxes through the parent; a
// macvlan interface for the host on the same parent, with a route, can.
func TestMacvlanHostReachesSandboxOnlyThroughItsOwnMacvlan(t *testing.T) {
	ctx := context.Background()
	seg := testns.NewSegment(t, "sw")
	seg.Machine(t, "router", pfx("192.168.50.1/24"))
	h := labHost(t, seg, "h1", "192.168.50.11/24")
	a := testns.New(t, "a")
	ep := mustAttach(t, h, a, macvlanNet("192.168.50.64/28"), AttachOptions{})
	mustPing(t, h.NS(), netip.MustParseAddr("192.168.50.1")) // the host is on the segment
	mustNotPing(t, h.NS(), ep.Addr(false))                   // the limitation

	// The workaround: the host gets a macvlan of its own (bridge mode), an
	// address on the segment, and a route to the sandboxes' range through it.
	if _, err := macvlan.Create(ctx, h.NS(), macvlan.Link{Name: "snm-host", Parent: "eth0"}); err != nil {
		t.Fatal(err)
	}
	testns.Run(t, h.NS(), "ip", "addr", "add", "192.168.50.62/32", "dev", "snm-host")
	testns.Run(t, h.NS(), "ip", "link", "set", "snm-host", "up")
	testns.Run(t, h.NS(), "ip", "route", "add", "192.168.50.64/28", "dev", "snm-host")
	mustPing(t, h.NS(), ep.Addr(false))
	if err := macvlan.Delete(ctx, h.NS(), "snm-host"); err != nil {
		t.Fatal(err)
	}
	if err := h.Detach(ctx, ep); err != nil {
		t.Fatal(err)
	}
}

// labResidue is hostResidue for a lab machine, whose eth0 (its cable to the
// switch) is a veth of the lab, not sandnet's.
func labResidue(t *testing.T, h *Host) []string {
	t.Helper()
	var left []string
	for _, r := range hostResidue(t, h) {
		if r != "veth eth0" {
			left = append(left, r)
		}
	}
	return left
}
