package sandnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

var dual = Network{
	Name:    "n1",
	Subnet:  netip.MustParsePrefix("10.88.0.0/24"),
	Subnet6: netip.MustParsePrefix("fd00:88::/64"),
}

func TestBridgeAttachEndToEnd(t *testing.T) {
	h := newTestHost(t)
	a, b := testns.New(t, "a"), testns.New(t, "b")
	epA := mustAttach(t, h, a, dual, AttachOptions{})
	epB := mustAttach(t, h, b, dual, AttachOptions{})

	// The sandbox holds lo (up) and eth0 with its addresses and a default route.
	nl, _ := a.Netlink()
	lo, _ := nl.LinkByIndex(1)
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is down in the sandbox")
	}
	eth0, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().Flags&net.FlagUp == 0 || eth0.Attrs().MTU != epA.MTU {
		t.Errorf("eth0 flags %v mtu %d", eth0.Attrs().Flags, eth0.Attrs().MTU)
	}
	addrs, _ := nl.AddrList(eth0, netlink.FAMILY_ALL)
	have := map[string]bool{}
	for _, ad := range addrs {
		have[ad.IPNet.String()] = true
	}
	for _, p := range epA.Addresses {
		if !have[p.String()] {
			t.Errorf("eth0 lacks %s (has %v)", p, have)
		}
	}
	if epA.Addr(false) != netip.MustParseAddr("10.88.0.2") || epB.Addr(false) != netip.MustParseAddr("10.88.0.3") {
		t.Errorf("addresses %v %v, want .2 and .3", epA.Addresses, epB.Addresses)
	}
	routes := testns.Run(t, a, "ip", "route")
	if !strings.Contains(routes, "default via 10.88.0.1 dev eth0") {
		t.Errorf("no default route:\n%s", routes)
	}
	routes6 := testns.Run(t, a, "ip", "-6", "route")
	if !strings.Contains(routes6, "default via fd00:88::1 dev eth0") {
		t.Errorf("no IPv6 default route:\n%s", routes6)
	}

	// Real traffic: ping and TCP between sandboxes, and from the host, both families.
	for _, to := range []*Endpoint{epB} {
		for _, v6 := range []bool{false, true} {
			if err := testns.Ping(a, to.Addr(v6).String()); err != nil {
				t.Errorf("ping a -> %s: %v", to.Addr(v6), err)
			}
		}
	}
	listenTCP(t, b, ":7000")
	for _, v6 := range []bool{false, true} {
		target := netip.AddrPortFrom(epB.Addr(v6), 7000).String()
		if err := dialEcho(a, target); err != nil {
			t.Errorf("tcp a -> %s: %v", target, err)
		}
		if err := dialEcho(h.ns, target); err != nil {
			t.Errorf("tcp host -> %s: %v", target, err)
		}
		if err := testns.Ping(h.ns, epA.Addr(v6).String()); err != nil {
			t.Errorf("ping host -> %s: %v", epA.Addr(v6), err)
		}
	}

	// The endpoint is JSON and recorded; a second Host sees it.
	if _, err := json.Marshal(epA); err != nil {
		t.Fatal(err)
	}
	h2, err := NewHostNS(h.ns, HostConfig{StateDir: h.dir})
	if err != nil {
		t.Fatal(err)
	}
	eps, err := h2.Endpoints("n1")
	if err != nil || len(eps) != 2 {
		t.Fatalf("Endpoints = %d, %v", len(eps), err)
	}

	// Attaching the same sandbox twice is a conflict and changes nothing.
	if _, err := h.AttachNS(context.Background(), a, dual, AttachOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("second attach = %v, want ErrExists", err)
	}

	if err := h.Detach(context.Background(), epA); err != nil {
		t.Fatal(err)
	}
	if err := h.Detach(context.Background(), epA); err != nil {
		t.Errorf("second detach = %v", err)
	}
	if err := h2.DetachSandbox(context.Background(), "n1", epB.SandboxID); err != nil {
		t.Fatal(err)
	}
	if left := hostResidue(t, h); len(left) > 0 {
		t.Errorf("left after detach: %v", left)
	}
	if out := testns.Run(t, a, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("eth0 still in the sandbox:\n%s", out)
	}
	if err := h.RemoveNetwork(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ns.Netlink(); err == nil {
		nl, _ := h.ns.Netlink()
		if _, err := nl.LinkByName(dual.withDefaultsMust(t).Bridge); err == nil {
			t.Error("bridge left after RemoveNetwork")
		}
	}
}

func (n Network) withDefaultsMust(t *testing.T) Network {
	d, err := n.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestNoIPv6Chatter: a bridge port (the host end of the veth) gets no IPv6
// link-local address, and neither does the interface of a sandbox on an
// IPv4-only network, where IPv6 is off as Docker has it: their duplicate
// address detection, MLD reports and router solicitations would be
// flooded to every other port, a cost that grows with the network. On a
// network with IPv6 the sandbox keeps it.
func TestNoIPv6Chatter(t *testing.T) {
	h := newTestHost(t)
	v4 := Network{Name: "v4", Subnet: netip.MustParsePrefix("10.88.1.0/24")}
	a, b, c := testns.New(t, "a"), testns.New(t, "b"), testns.New(t, "c")
	epA := mustAttach(t, h, a, v4, AttachOptions{})
	epB := mustAttach(t, h, b, v4, AttachOptions{})
	epC := mustAttach(t, h, c, dual, AttachOptions{})
	if err := testns.Ping(a, epB.Addr(false).String()); err != nil {
		t.Errorf("ping a -> b: %v", err)
	}
	for _, ep := range []*Endpoint{epA, epB, epC} {
		if out := testns.Run(t, h.ns, "ip", "-d", "link", "show", "dev", ep.HostIfName); !strings.Contains(out, "addrgenmode none") {
			t.Errorf("host end %s has IPv6 addressing on:\n%s", ep.HostIfName, out)
		}
		if out := testns.Run(t, h.ns, "ip", "-6", "addr", "show", "dev", ep.HostIfName); strings.Contains(out, "inet6") {
			t.Errorf("host end %s has an IPv6 address:\n%s", ep.HostIfName, out)
		}
	}
	for _, sb := range []*netns.NS{a, b} {
		if v, err := sb.ReadSysctl("net.ipv6.conf.eth0.disable_ipv6"); err != nil || v != "1" {
			t.Errorf("%s: eth0 disable_ipv6 = %q, %v; want 1 on an IPv4-only network", sb, v, err)
		}
		// eth0 was born with IPv6 off (the sandbox's default, set for its
		// creation): the default is as it was.
		if v, err := sb.ReadSysctl("net.ipv6.conf.default.disable_ipv6"); err != nil || v != "0" {
			t.Errorf("%s: default disable_ipv6 = %q, %v; want 0 (put back after the attach)", sb, v, err)
		}
		if out := testns.Run(t, sb, "ip", "-6", "addr", "show", "dev", "eth0"); strings.Contains(out, "inet6") {
			t.Errorf("%s: eth0 has an IPv6 address on an IPv4-only network:\n%s", sb, out)
		}
	}
	if v, err := c.ReadSysctl("net.ipv6.conf.eth0.disable_ipv6"); err != nil || v != "0" {
		t.Errorf("c: eth0 disable_ipv6 = %q, %v; want 0 on a network with IPv6", v, err)
	}
	if out := testns.Run(t, c, "ip", "-6", "addr", "show", "dev", "eth0"); !strings.Contains(out, epC.Addr(true).String()) {
		t.Errorf("c: eth0 lacks its IPv6 address:\n%s", out)
	}
}

func TestDetachWhenSandboxIsGone(t *testing.T) {
	h := newTestHost(t)
	sb := testns.New(t, "gone")
	ep := mustAttach(t, h, sb, dual, AttachOptions{})
	sb.Close()
	if err := netns.Delete(context.Background(), sb.Name()); err != nil {
		t.Fatal(err)
	}
	if err := h.Detach(context.Background(), ep); err != nil {
		t.Fatalf("detach after the namespace went: %v", err)
	}
	if left := hostResidue(t, h); len(left) > 0 {
		t.Errorf("left: %v", left)
	}
}

func TestNoneAndHostDrivers(t *testing.T) {
	h := newTestHost(t)
	sb := testns.New(t, "none")
	ep := mustAttach(t, h, sb, Network{Name: "none", Driver: DriverNone}, AttachOptions{})
	out := testns.Run(t, sb, "ip", "-o", "link")
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") || !strings.Contains(out, "UP") {
		t.Errorf("none: want only lo, up:\n%s", out)
	}
	if err := h.Detach(context.Background(), ep); err != nil {
		t.Fatal(err)
	}

	// host: the sandbox is the host namespace; Attach reports, changes nothing.
	testns.Run(t, h.ns, "ip", "link", "set", "lo", "up")
	testns.Run(t, h.ns, "ip", "link", "add", "snt-up", "type", "veth", "peer", "name", "snt-up2")
	testns.Run(t, h.ns, "ip", "addr", "add", "192.0.2.10/24", "dev", "snt-up")
	testns.Run(t, h.ns, "ip", "link", "set", "snt-up", "up")
	before := testns.Run(t, h.ns, "ip", "-o", "addr")
	hep, err := h.AttachNS(context.Background(), h.ns, Network{Name: "host", Driver: DriverHost}, AttachOptions{SandboxID: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(hep.Addresses), "192.0.2.10/24") {
		t.Errorf("host endpoint addresses %v", hep.Addresses)
	}
	if after := testns.Run(t, h.ns, "ip", "-o", "addr"); after != before {
		t.Errorf("host driver changed the host:\n%s\n%s", before, after)
	}
	if err := h.Detach(context.Background(), hep); err != nil {
		t.Fatal(err)
	}
	// A bridge network cannot take the host namespace as a sandbox.
	if _, err := h.AttachNS(context.Background(), h.ns, dual, AttachOptions{SandboxID: "me"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bridge attach of the host ns = %v, want ErrInvalid", err)
	}
	if _, err := h.AttachNS(context.Background(), sb, Network{Name: "x", Driver: "ipvlan"}, AttachOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown driver = %v, want ErrInvalid", err)
	}
}

func TestBadInputIsTypedAndLeavesNothing(t *testing.T) {
	h := newTestHost(t)
	sb := testns.New(t, "bad")
	mustAttach(t, h, sb, Network{Name: "taken", Subnet: netip.MustParsePrefix("10.90.0.0/24")}, AttachOptions{SandboxID: "first", IfName: "eth9", IP: netip.MustParseAddr("10.90.0.50")})
	before := hostResidue(t, h)
	cases := []struct {
		name string
		n    Network
		o    AttachOptions
		want error
	}{
		{"host bits", Network{Name: "b1", Subnet: netip.MustParsePrefix("10.91.0.1/24")}, AttachOptions{}, ErrInvalid},
		{"gateway outside", Network{Name: "b2", Subnet: netip.MustParsePrefix("10.91.0.0/24"), Gateway: netip.MustParseAddr("10.92.0.1")}, AttachOptions{}, ErrInvalid},
		{"overlap", Network{Name: "b3", Subnet: netip.MustParsePrefix("10.90.0.0/16")}, AttachOptions{}, ErrExists},
		{"same name other subnet", Network{Name: "taken", Subnet: netip.MustParsePrefix("10.93.0.0/24")}, AttachOptions{}, ErrExists},
		{"static outside", Network{Name: "taken"}, AttachOptions{IP: netip.MustParseAddr("10.99.0.5")}, ErrInvalid},
		{"static taken", Network{Name: "taken"}, AttachOptions{IP: netip.MustParseAddr("10.90.0.50")}, ErrInUse},
		{"long ifname", Network{Name: "taken"}, AttachOptions{IfName: "eth0-way-too-long"}, ErrInvalid},
		{"bad ifname", Network{Name: "taken"}, AttachOptions{IfName: "et h0"}, ErrInvalid},
		{"long bridge", Network{Name: "b4", Subnet: netip.MustParsePrefix("10.94.0.0/24"), Bridge: "bridge-name-too-long"}, AttachOptions{}, ErrInvalid},
		{"bad network name", Network{Name: "../etc", Subnet: netip.MustParsePrefix("10.95.0.0/24")}, AttachOptions{}, ErrInvalid},
		{"unknown network", Network{Name: "nosuch"}, AttachOptions{}, ErrNotFound},
		{"bad hostname", Network{Name: "taken"}, AttachOptions{Hostname: "-x"}, ErrInvalid},
		{"v6 as v4", Network{Name: "taken"}, AttachOptions{IP: netip.MustParseAddr("fd00::1")}, ErrInvalid},
	}
	for _, c := range cases {
		_, err := h.AttachNS(context.Background(), sb, c.n, c.o)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := h.Attach(context.Background(), "/etc/hostname", dual, AttachOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("not a namespace: %v", err)
	}
	if _, err := h.Attach(context.Background(), "snt-no-such-ns", dual, AttachOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing namespace: %v", err)
	}
	if after := hostResidue(t, h); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("bad input left: %v (before %v)", after, before)
	}
	nets, _ := h.Networks()
	if len(nets) != 1 {
		t.Errorf("networks after bad input: %v", nets)
	}
}

func TestExhaustedPool(t *testing.T) {
	h := newTestHost(t)
	n := Network{Name: "tiny", Subnet: netip.MustParsePrefix("10.96.0.0/30")} // one usable address
	mustAttach(t, h, testns.New(t, "x1"), n, AttachOptions{})
	_, err := h.AttachNS(context.Background(), testns.New(t, "x2"), n, AttachOptions{})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("attach to a full network = %v, want ErrExhausted", err)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepAddress {
		t.Errorf("error %v does not name the address step", err)
	}
}

func TestAttachFailureAtEachStepLeavesNothing(t *testing.T) {
	h := newTestHost(t)
	sb := testns.New(t, "inject")
	steps := []Step{StepNetwork, StepClaim, StepAddress, StepLink, StepConfigure, StepDNS, StepPorts, StepRecord}
	for _, step := range steps {
		injected := errors.New("injected at " + string(step))
		h.stepHook = func(s Step) error {
			if s == step {
				return injected
			}
			return nil
		}
		_, err := h.AttachNS(context.Background(), sb, dual, AttachOptions{})
		h.stepHook = nil
		if !errors.Is(err, injected) {
			t.Fatalf("step %s: err = %v", step, err)
		}
		if left := hostResidue(t, h); len(left) > 0 {
			t.Errorf("failure at %q left %v", step, left)
		}
		if out := testns.Run(t, sb, "ip", "-o", "link"); strings.Contains(out, "eth0") {
			t.Errorf("failure at %q left eth0 in the sandbox", step)
		}
	}
	// And after all that, an attach works.
	ep := mustAttach(t, h, sb, dual, AttachOptions{})
	if !dual.Subnet.Contains(ep.Addr(false)) {
		t.Errorf("address after failures: %v", ep.Addresses)
	}
}
