package sandnet

import (
	"context"
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

var counters = regexp.MustCompile(` \[\d+:\d+\]$`)

// savedRules is iptables-save and ip6tables-save of ns, normalised: no
// comment lines, no counters. Order is kept: it matters.
func savedRules(t *testing.T, ns *netns.NS) []string {
	t.Helper()
	var out []string
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		for _, l := range strings.Split(testns.Run(t, ns, cmd), "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			out = append(out, cmd+": "+counters.ReplaceAllString(l, ""))
		}
	}
	return out
}

// duplicateRules returns the rule lines that appear more than once.
func duplicateRules(lines []string) []string {
	seen := map[string]int{}
	var dups []string
	for _, l := range lines {
		if strings.Contains(l, " -A ") || strings.Contains(l, ": -A ") {
			seen[l]++
			if seen[l] == 2 {
				dups = append(dups, l)
			}
		}
	}
	return dups
}

func diffLines(a, b []string) (onlyA, onlyB []string) {
	for _, l := range a {
		if !slices.Contains(b, l) {
			onlyA = append(onlyA, l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			onlyB = append(onlyB, l)
		}
	}
	return
}

func hasObject(r CheckReport, obj Object) bool {
	return slices.ContainsFunc(r.Problems, func(p Problem) bool { return p.Object == obj })
}

// TestDriftReconcileRestoresRules flushes the host namespace's nat and
// filter tables (as `iptables -F` does), then deletes the chains too (as a
// firewall reload does): each time one Reconcile brings back exactly the
// rules there were, a second finds nothing to do, and traffic through the
// published ports flows again.
func TestDriftReconcileRestoresRules(t *testing.T) {
	ctx := context.Background()
	testns.NeedProgram(t, "iptables backend", "iptables", "ip6tables") // the test flushes iptables rules by hand
	lab := newNATLab(t, func(ns *netns.NS) nat.Backend { return nat.NewIPTables(ns) })
	h := lab.h
	nets := []Network{
		{Name: "drift-a", Subnet: netip.MustParsePrefix("10.97.1.0/24"), Subnet6: netip.MustParsePrefix("fd00:97:1::/64")},
		{Name: "drift-b", Subnet: netip.MustParsePrefix("10.97.2.0/24"), NoICC: true},
	}
	type sbx struct {
		ns   *netns.NS
		ep   *Endpoint
		port int
	}
	var sbs []sbx
	for i, spec := range []struct {
		n    Network
		port string
	}{{nets[0], "18080:80"}, {nets[0], "127.0.0.1:18081:80/tcp"}, {nets[1], "18082:80"}} {
		ns := testns.New(t, "drift")
		ports, err := ParsePort(spec.port)
		if err != nil {
			t.Fatal(err)
		}
		ep := mustAttach(t, h, ns, spec.n, AttachOptions{SandboxID: "drift-" + string(rune('a'+i)), Hostname: "web" + string(rune('a'+i)), Ports: ports})
		serveWho(t, ns, 80)
		sbs = append(sbs, sbx{ns, ep, int(ports[0].HostPort)})
	}
	reach := func(when string) {
		t.Helper()
		for _, s := range []sbx{sbs[0], sbs[2]} {
			if _, err := whoTCP(lab.up, hp(uplinkAddr, s.port), 3*time.Second); err != nil {
				t.Fatalf("%s: upstream to published port %d: %v", when, s.port, err)
			}
		}
	}
	reach("before the flush")
	for _, s := range sbs {
		rep, err := h.Check(ctx, s.ep)
		if err != nil || !rep.OK() {
			t.Fatalf("check of a whole endpoint: %+v, %v", rep.Problems, err)
		}
	}
	golden := savedRules(t, lab.hns)

	for _, drift := range []struct {
		name string
		cmds [][]string
	}{
		{"iptables -F", [][]string{{"-t", "nat", "-F"}, {"-t", "filter", "-F"}}},
		{"firewall reload", [][]string{{"-t", "nat", "-F"}, {"-t", "filter", "-F"}, {"-t", "nat", "-X"}, {"-t", "filter", "-X"}}},
	} {
		for _, bin := range []string{"iptables", "ip6tables"} {
			for _, c := range drift.cmds {
				testns.Run(t, lab.hns, bin, append([]string{"-w"}, c...)...)
			}
		}
		if _, err := whoTCP(lab.up, hp(uplinkAddr, sbs[0].port), time.Second); err == nil {
			t.Fatalf("%s: the published port still answers without rules", drift.name)
		}
		rep, err := h.Check(ctx, sbs[0].ep)
		if err != nil || !hasObject(rep, ObjRule) {
			t.Fatalf("%s: Check = %v, %v; want missing rules", drift.name, rep.Problems, err)
		}
		missing, err := h.MissingRules(ctx, sbs[0].ep)
		if err != nil || len(missing) == 0 {
			t.Fatalf("%s: MissingRules = %v, %v", drift.name, missing, err)
		}
		rrep, err := h.Reconcile(ctx)
		if err != nil {
			t.Fatalf("%s: Reconcile: %v", drift.name, err)
		}
		if len(rrep.Repaired) == 0 {
			t.Fatalf("%s: Reconcile repaired nothing", drift.name)
		}
		after := savedRules(t, lab.hns)
		if onlyBefore, onlyAfter := diffLines(golden, after); len(onlyBefore)+len(onlyAfter) > 0 || len(golden) != len(after) {
			t.Fatalf("%s: rules after Reconcile differ:\nmissing: %q\nextra: %q", drift.name, onlyBefore, onlyAfter)
		}
		if !slices.Equal(golden, after) {
			t.Errorf("%s: same rules, other order:\n%s\nwant\n%s", drift.name, strings.Join(after, "\n"), strings.Join(golden, "\n"))
		}
		if d := duplicateRules(after); len(d) > 0 {
			t.Errorf("%s: duplicates: %q", drift.name, d)
		}
		again, err := h.Reconcile(ctx)
		if err != nil || len(again.Repaired) != 0 {
			t.Errorf("%s: second Reconcile = %+v, %v; want nothing to do", drift.name, again, err)
		}
		if !slices.Equal(golden, savedRules(t, lab.hns)) {
			t.Errorf("%s: the second Reconcile changed the rules", drift.name)
		}
		reach("after " + drift.name + " and Reconcile")
	}
}

// TestCheckAndRepairEachPiece breaks one piece of an endpoint at a time
// behind sandnet's back; Check names it, Repair puts it back, and the
// endpoint works again.
func TestCheckAndRepairEachPiece(t *testing.T) {
	ctx := context.Background()
	h := newTestHostFW(t, "iptables") // the test reads and breaks iptables rules
	n := Network{Name: "mend", Subnet: netip.MustParsePrefix("10.97.8.0/24"), Subnet6: netip.MustParsePrefix("fd00:97:8::/64")}
	sb := testns.New(t, "mend")
	ports, _ := ParsePort("18090:80")
	ep := mustAttach(t, h, sb, n, AttachOptions{Hostname: "mendy", Ports: ports})
	peer := mustAttach(t, h, testns.New(t, "peer"), n, AttachOptions{Hostname: "peer"})
	_ = peer
	nd, _ := h.Network("mend")
	gw, gw6 := nd.Gateway.String(), nd.Gateway6.String()
	cases := []struct {
		name   string
		want   Object
		break_ func()
	}{
		{"host veth deleted", ObjHostVeth, func() { testns.Run(t, h.ns, "ip", "link", "del", ep.HostIfName) }},
		{"sandbox interface down", ObjSandboxIf, func() { testns.Run(t, sb, "ip", "link", "set", ep.IfName, "down") }},
		{"host veth off the bridge", ObjHostVeth, func() { testns.Run(t, h.ns, "ip", "link", "set", ep.HostIfName, "nomaster") }},
		{"address removed", ObjAddress, func() { testns.Run(t, sb, "ip", "addr", "del", ep.Addresses[0].String(), "dev", ep.IfName) }},
		{"default route removed", ObjRoute, func() { testns.Run(t, sb, "ip", "route", "del", "default") }},
		{"gateway address removed", ObjBridge, func() { testns.Run(t, h.ns, "ip", "addr", "del", gw+"/24", "dev", nd.Bridge) }},
		{"bridge down", ObjBridge, func() { testns.Run(t, h.ns, "ip", "link", "set", nd.Bridge, "down") }},
		{"DNAT rule deleted", ObjRule, func() {
			for _, r := range nat.EndpointRules(natNetwork(&nd), natEndpoint(ep, ep.Ports)) {
				testns.Run(t, h.ns, r.Family.Command(), append([]string{"-w", "-t", r.Table, "-D", r.Chain}, r.Args...)...)
			}
		}},
		{"lease released", ObjLease, func() { h.ipam.Release(ctx, leaseKey(ep)) }},
		{"port table entry lost", ObjPort, func() { h.releasePorts(ctx, ep, ep.Ports) }},
		{"name server killed", ObjDNS, func() {
			pid := h.DNSHelperPID()
			if pid == 0 {
				t.Fatal("no DNS helper runs")
			}
			syscall.Kill(pid, syscall.SIGKILL)
			deadline := time.Now().Add(10 * time.Second)
			for h.DNSHelperPID() != 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}},
	}
	rules := savedRules(t, h.ns)
	for _, c := range cases {
		c.break_()
		rep, err := h.Check(ctx, ep)
		if err != nil {
			t.Fatalf("%s: Check: %v", c.name, err)
		}
		if !hasObject(rep, c.want) {
			t.Fatalf("%s: Check = %v, want a %s problem", c.name, rep.Problems, c.want)
		}
		before, err := h.Repair(ctx, ep)
		if err != nil {
			t.Fatalf("%s: Repair: %v (found %v)", c.name, err, before.Problems)
		}
		if rep, err := h.Check(ctx, ep); err != nil || !rep.OK() {
			t.Fatalf("%s: after Repair, Check = %v, %v", c.name, rep.Problems, err)
		}
		if err := testns.Ping(sb, gw); err != nil {
			t.Errorf("%s: after Repair, ping %s: %v", c.name, gw, err)
		}
		if err := testns.Ping(sb, gw6); err != nil {
			t.Errorf("%s: after Repair, ping %s: %v", c.name, gw6, err)
		}
		if got := savedRules(t, h.ns); !slices.Equal(got, rules) {
			a, b := diffLines(rules, got)
			t.Errorf("%s: rules after Repair differ: missing %q, extra %q", c.name, a, b)
		}
	}
	// A whole endpoint: Repair finds nothing and changes nothing.
	if rep, err := h.Repair(ctx, ep); err != nil || !rep.OK() {
		t.Errorf("repair of a whole endpoint = %v, %v", rep.Problems, err)
	}
	// A gone namespace is GC's work, not Repair's.
	gone := testns.New(t, "gone")
	gep := mustAttach(t, h, gone, n, AttachOptions{})
	netns.Delete(ctx, gone.Name())
	if rep, err := h.Check(ctx, gep); err != nil || !hasObject(rep, ObjSandbox) {
		t.Errorf("check of an endpoint whose namespace is gone = %v, %v", rep.Problems, err)
	}
	if _, err := h.Repair(ctx, gep); err == nil {
		t.Error("repair of an endpoint whose namespace is gone succeeded")
	}
	if rep, err := h.Reconcile(ctx); err != nil || len(rep.Skipped) != 1 {
		t.Errorf("reconcile with a gone namespace = %+v, %v; want it skipped", rep, err)
	}
	if _, err := h.Check(ctx, &Endpoint{Network: "mend", SandboxID: "nobody"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("check of an unknown endpoint: %v", err)
	}
}
