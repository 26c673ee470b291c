package sandnet

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

var fwBackends = []struct {
	name string
	new  func(*netns.NS) nat.Backend
}{
	{"iptables", func(ns *netns.NS) nat.Backend { return nat.NewIPTables(ns) }},
	{"nftables", func(ns *netns.NS) nat.Backend { return nat.NewNFTables(ns) }},
}

// runBackends runs test once per firewall backend, skipping the iptables
// one where iptables is not installed.
func runBackends(t *testing.T, test func(t *testing.T, name string, new func(*netns.NS) nat.Backend)) {
	for _, bk := range fwBackends {
		t.Run(bk.name, func(t *testing.T) {
			if bk.name == "iptables" {
				testns.NeedProgram(t, "iptables backend", "iptables", "ip6tables")
			}
			test(t, bk.name, bk.new)
		})
	}
}

// setBridgeNF sets the host namespace's br_netfilter settings (per
// namespace; sandnet itself never changes them).
func setBridgeNF(t *testing.T, ns *netns.NS, ip4, ip6 string) {
	t.Helper()
	if _, err := ns.Sysctl("net.bridge.bridge-nf-call-iptables", ip4); err != nil {
		t.Skipf("br_netfilter's settings are not there (modprobe br_netfilter): %v", err)
	}
	if _, err := ns.Sysctl("net.bridge.bridge-nf-call-ip6tables", ip6); err != nil {
		t.Fatal(err)
	}
}

// TestReconcileRestoresPortFlags (issue 16 item 4): a network's bridge
// deleted by hand and put back by Reconcile gets its ports' flags back:
// hairpin (a sandbox reaches its own published port through the host's
// address) where bridged traffic goes through netfilter, isolated (a
// --no-icc network's sandboxes cannot reach each other) where it does not.
// Check names a flag that is off; a second Reconcile has nothing to do.
func TestReconcileRestoresPortFlags(t *testing.T) {
	runBackends(t, func(t *testing.T, backend string, newFW func(*netns.NS) nat.Backend) {
		ctx := context.Background()
		lab := newNATLab(t, newFW)
		h := lab.h
		a, b, c := testns.New(t, "pf"), testns.New(t, "pf"), testns.New(t, "pf")
		hairNet := Network{Name: "hair", Subnet: mustPrefix("10.97.30.0/24")}
		epA := mustAttach(t, h, a, hairNet, AttachOptions{Ports: mustPorts(t, "18330:80")})
		serveWho(t, a, 80)
		own := func() error { _, err := whoTCP(a, hp(uplinkAddr, 18330), 3*time.Second); return err }
		if err := own(); err != nil {
			t.Fatalf("a sandbox reaching its own published port (hairpin), before: %v", err)
		}
		// The other network: bridged frames bypass netfilter, so --no-icc is port isolation.
		setBridgeNF(t, lab.hns, "0", "0")
		iso := Network{Name: "iso", Subnet: mustPrefix("10.97.31.0/24"), NoICC: true}
		epB := mustAttach(t, h, b, iso, AttachOptions{})
		epC := mustAttach(t, h, c, iso, AttachOptions{})
		if testns.Ping(b, epC.Addr(false).String()) == nil {
			t.Fatal("--no-icc sandboxes reach each other before anything broke")
		}
		setBridgeNF(t, lab.hns, "1", "1")

		for _, ep := range []*Endpoint{epA, epB} {
			testns.Run(t, lab.hns, "ip", "link", "del", ep.Bridge)
		}
		rep, err := h.Check(ctx, epA)
		if err != nil || !hasObject(rep, ObjHostVeth) {
			t.Errorf("Check with the bridge gone: %v, %v; want a host-veth problem (a flag off)", rep.Problems, err)
		}
		setBridgeNF(t, lab.hns, "0", "0") // the iso network's view when it is repaired
		if _, err := h.Repair(ctx, epB); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Repair(ctx, epC); err != nil {
			t.Fatal(err)
		}
		setBridgeNF(t, lab.hns, "1", "1")
		if _, err := h.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		again, err := h.Reconcile(ctx)
		if err != nil || len(again.Repaired) != 0 {
			t.Errorf("second Reconcile = %+v, %v; want nothing to repair", again.Repaired, err)
		}
		if err := own(); err != nil {
			t.Errorf("a sandbox reaching its own published port after the bridge came back: %v", err)
		}
		for _, ep := range []*Endpoint{epB, epC} {
			if on, err := bridge.PortFlags(h.ns, ep.HostIfName); err != nil || !on.Isolated {
				t.Errorf("%s after Repair: flags %v, %v; want isolated", ep.HostIfName, on, err)
			}
		}
		setBridgeNF(t, lab.hns, "0", "0")
		if testns.Ping(b, epC.Addr(false).String()) == nil {
			t.Error("--no-icc sandboxes reach each other after the bridge came back")
		}
		if rep, err := h.Check(ctx, epB); err != nil || !rep.OK() {
			t.Errorf("Check of the --no-icc endpoint after Repair: %v, %v", rep.Problems, err)
		}
	})
}

// TestNoICCIPv6WithOnlyIPv4BridgeNetfilter (issue 16 item 9): with only
// net.bridge.bridge-nf-call-iptables on, bridged IPv6 never meets the
// FORWARD rules, so a --no-icc network isolates its ports: its sandboxes
// reach each other over neither family.
func TestNoICCIPv6WithOnlyIPv4BridgeNetfilter(t *testing.T) {
	runBackends(t, func(t *testing.T, backend string, newFW func(*netns.NS) nat.Backend) {
		lab := newNATLab(t, newFW)
		setBridgeNF(t, lab.hns, "1", "0")
		n := Network{Name: "noicc6", Subnet: mustPrefix("10.97.32.0/24"), Subnet6: mustPrefix("fd00:97:32::/64"), NoICC: true}
		a, b := testns.New(t, "icc"), testns.New(t, "icc")
		mustAttach(t, lab.h, a, n, AttachOptions{})
		epB := mustAttach(t, lab.h, b, n, AttachOptions{})
		if testns.Ping(a, epB.Addr(false).String()) == nil {
			t.Error("--no-icc sandboxes reach each other over IPv4")
		}
		if testns.Ping(a, epB.Addr(true).String()) == nil {
			t.Error("--no-icc sandboxes reach each other over IPv6")
		}
	})
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestPublishLargeRange (issue 16 item 8): a range of 3000 ports (past
// where netlink batches overflowed: ~1000 and ~2400 ports) is published
// through Attach on both backends, answers at its far end, and goes with
// Detach.
func TestPublishLargeRange(t *testing.T) {
	runBackends(t, func(t *testing.T, backend string, newFW func(*netns.NS) nat.Backend) {
		lab := newNATLab(t, newFW)
		sb := testns.New(t, "range")
		ep := mustAttach(t, lab.h, sb, Network{Name: "range", Subnet: mustPrefix("10.97.37.0/24")},
			AttachOptions{Ports: mustPorts(t, "20000-22999:30000-32999")})
		serveWho(t, sb, 32999)
		if _, err := whoTCP(lab.up, hp(uplinkAddr, 22999), 3*time.Second); err != nil {
			t.Errorf("the last port of the range from upstream: %v", err)
		}
		if rep, err := lab.h.Check(context.Background(), ep); err != nil || !rep.OK() {
			t.Errorf("Check: %d problems, %v", len(rep.Problems), err)
		}
		if err := lab.h.Detach(context.Background(), ep); err != nil {
			t.Fatal(err)
		}
		if left := firewallResidue(t, lab.hns); strings.Contains(strings.Join(left, "\n"), "ep=") {
			t.Errorf("published ports left after Detach")
		}
	})
}
