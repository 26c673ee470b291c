package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// foreignLines is what of iptables-save is not sandnet's.
func foreignLines(t *testing.T, ns *netns.NS) []string {
	t.Helper()
	var out []string
	for _, l := range savedRules(t, ns) {
		if strings.Contains(l, "-A ") && !strings.Contains(l, `"sandnet`) && !strings.Contains(l, "comment sandnet") && !strings.Contains(l, "SANDNET-") {
			out = append(out, l)
		}
		if strings.Contains(l, "FOREIGN") || strings.Contains(l, "sandnetwork") {
			out = append(out, "+"+l)
		}
	}
	return out
}

// foreignLinks describes the links whose names are not sandnet's.
func foreignLinks(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(testns.Run(t, ns, "ip", "-o", "addr"), "\n") {
		if strings.Contains(l, "br-foreign") || strings.Contains(l, "fv0") || strings.Contains(l, "fv1") {
			keep = append(keep, strings.Join(strings.Fields(l)[1:4], " "))
		}
	}
	for _, l := range strings.Split(testns.Run(t, ns, "ip", "-o", "link"), "\n") {
		if f := strings.Fields(l); len(f) > 2 && (strings.HasPrefix(f[1], "br-foreign") || strings.HasPrefix(f[1], "fv")) {
			flags := strings.NewReplacer("NO-CARRIER,", "", ",LOWER_UP", "", ",M-DOWN", "").Replace(f[2]) // carrier follows the peer, not us
			keep = append(keep, f[1]+" "+flags)
		}
	}
	slices.Sort(keep)
	return strings.Join(keep, "\n")
}

// sandnetRules are the lines of iptables-save that are sandnet's.
func sandnetRules(t *testing.T, ns *netns.NS) []string {
	var out []string
	for _, l := range savedRules(t, ns) {
		if strings.Contains(l, "SANDNET-") || strings.Contains(l, "--comment sandnet ") || strings.Contains(l, `--comment "sandnet `) {
			out = append(out, l)
		}
	}
	return out
}

// portEntries lists the port table.
func portEntries(t *testing.T, h *Host) []portEntry {
	t.Helper()
	es, err := h.listPorts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestGCAndReconcileLeaveForeignObjects: another program's bridge, veths
// and iptables rules (one with a comment that starts like sandnet's) in
// the same host namespace survive crashes, GC, Reconcile, Detach and the
// removal of every sandnet network, untouched.
func TestGCAndReconcileLeaveForeignObjects(t *testing.T) {
	ctx := context.Background()
	h := newTestHostFW(t, "iptables") // the test reads and breaks iptables rules
	for _, c := range [][]string{
		{"ip", "link", "add", "br-foreign", "type", "bridge"},
		{"ip", "addr", "add", "172.31.0.1/24", "dev", "br-foreign"},
		{"ip", "link", "set", "br-foreign", "up"},
		{"ip", "link", "add", "fv0", "type", "veth", "peer", "name", "fv1"},
		{"ip", "link", "set", "fv0", "master", "br-foreign"},
		{"ip", "link", "set", "fv0", "up"},
		{"iptables", "-w", "-t", "nat", "-N", "FOREIGN"},
		{"iptables", "-w", "-t", "nat", "-A", "FOREIGN", "-p", "tcp", "--dport", "9999", "-j", "DNAT", "--to-destination", "172.31.0.2:80"},
		{"iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-j", "FOREIGN"},
		{"iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "172.31.0.0/24", "!", "-o", "br-foreign", "-j", "MASQUERADE"},
		{"iptables", "-w", "-A", "FORWARD", "-i", "br-foreign", "-m", "comment", "--comment", "sandnetwork lookalike net=x", "-j", "ACCEPT"},
		{"iptables", "-w", "-A", "FORWARD", "-o", "br-foreign", "-m", "comment", "--comment", "not ours", "-j", "ACCEPT"},
		{"ip6tables", "-w", "-A", "FORWARD", "-i", "br-foreign", "-j", "ACCEPT"},
	} {
		testns.Run(t, h.ns, c[0], c[1:]...)
	}
	rules, links := foreignLines(t, h.ns), foreignLinks(t, h.ns)
	if len(rules) < 6 || !strings.Contains(links, "fv0") {
		t.Fatalf("lab not built: %q %q", rules, links)
	}
	check := func(when string) {
		t.Helper()
		if got := foreignLines(t, h.ns); !slices.Equal(got, rules) {
			t.Fatalf("%s: foreign rules changed:\n%s\nwant\n%s", when, strings.Join(got, "\n"), strings.Join(rules, "\n"))
		}
		if got := foreignLinks(t, h.ns); got != links {
			t.Fatalf("%s: foreign links changed:\n%s\nwant\n%s", when, got, links)
		}
	}
	n := Network{Name: "own", Subnet: netip.MustParsePrefix("10.97.20.0/24"), Subnet6: netip.MustParsePrefix("fd00:97:20::/64")}
	var eps []*Endpoint
	for i := range 3 {
		ports, _ := ParsePort(fmt.Sprintf("%d:80", 18100+i))
		eps = append(eps, mustAttach(t, h, testns.New(t, "own"), n, AttachOptions{Hostname: fmt.Sprint("own", i), Ports: ports}))
	}
	ports, _ := ParsePort("18110:80")
	crashAtOpts(t, h, testns.New(t, "crash"), n, StepRecord, AttachOptions{Ports: ports})
	netns.Delete(ctx, eps[0].SandboxID)
	check("after attaches")
	if rep, err := h.GC(ctx); err != nil || len(rep.Endpoints) != 2 {
		t.Fatalf("GC = %+v, %v; want 2 endpoints collected", rep, err)
	}
	check("after GC")
	for _, bin := range []string{"iptables", "ip6tables"} {
		testns.Run(t, h.ns, bin, "-w", "-t", "nat", "-D", "POSTROUTING", "-j", "SANDNET-POSTROUTING", "-m", "comment", "--comment", "sandnet")
	}
	if _, err := h.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	check("after Reconcile")
	for _, ep := range eps[1:] {
		if err := h.Detach(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.GC(ctx); err != nil {
		t.Fatal(err)
	}
	check("after Detach and GC")
	if left := sandnetRules(t, h.ns); len(left) > 0 {
		t.Errorf("sandnet rules left: %q", left)
	}
	if left := hostResidue(t, h); len(left) != 2 || !strings.Contains(fmt.Sprint(left), "fv0") {
		t.Errorf("residue: %v (want only the foreign veth pair)", left)
	}
}

// crashAtOpts is crashAt with attach options.
func crashAtOpts(t *testing.T, h *Host, sb *netns.NS, n Network, step Step, o AttachOptions) {
	t.Helper()
	h.stepHook = func(s Step) error {
		if s == step {
			panic("crash at " + step)
		}
		return nil
	}
	defer func() {
		h.stepHook = nil
		if r := recover(); r == nil {
			t.Fatalf("attach did not reach step %s", step)
		}
	}()
	h.AttachNS(context.Background(), sb, n, o)
}

// TestRebootWithPublishedPorts: namespaces and their veths vanish behind
// sandnet's back (a reboot that kept the state dir); GC reclaims their
// rules, port-table entries, DNS names, leases and records; the host ports
// and addresses are free again, and no address is handed out twice.
func TestRebootWithPublishedPorts(t *testing.T) {
	ctx := context.Background()
	h := newTestHostFW(t, "iptables")                                            // the test reads and breaks iptables rules
	n := Network{Name: "reboot", Subnet: netip.MustParsePrefix("10.97.30.0/29")} // 5 usable addresses
	var eps []*Endpoint
	var sbs []*netns.NS
	for i := range 4 {
		sb := testns.New(t, "rb")
		ports, _ := ParsePort(fmt.Sprintf("%d:80", 18200+i))
		eps = append(eps, mustAttach(t, h, sb, n, AttachOptions{Hostname: fmt.Sprint("rb", i), Ports: ports}))
		sbs = append(sbs, sb)
	}
	for _, ep := range eps[:3] {
		if err := netns.Delete(ctx, ep.SandboxID); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := h.GC(ctx)
	if err != nil || len(rep.Endpoints) != 3 {
		t.Fatalf("GC = %+v, %v", rep, err)
	}
	for _, l := range sandnetRules(t, h.ns) {
		for _, ep := range eps[:3] {
			if strings.Contains(l, "ep="+ep.ID) {
				t.Errorf("rule of a collected endpoint: %s", l)
			}
		}
	}
	if es := portEntries(t, h); len(es) != 1 || es[0].Holder.Endpoint != eps[3].ID {
		t.Errorf("port table after GC: %+v", es)
	}
	server := netip.AddrPortFrom(eps[3].Gateway, 53)
	for i := range 3 {
		if got, err := queryA(ctx, sbs[3], server, fmt.Sprint("rb", i)); err == nil {
			t.Errorf("name rb%d of a collected endpoint still answers %v", i, got)
		}
	}
	if got, err := queryA(ctx, sbs[3], server, "rb3"); err != nil || len(got) != 1 || got[0] != eps[3].Addr(false) {
		t.Errorf("live name rb3 = %v, %v", got, err)
	}
	// The freed ports and addresses go to new sandboxes; the live one's stay its own.
	seen := map[netip.Addr]bool{eps[3].Addr(false): true}
	for i := range 4 {
		ports, _ := ParsePort(fmt.Sprintf("%d:80", 18200+i))
		ep, err := h.AttachNS(ctx, testns.New(t, "rb2"), n, AttachOptions{Ports: ports})
		if i == 3 {
			if !errors.Is(err, ErrInUse) {
				t.Errorf("port 18203 of the live endpoint: %v, want ErrInUse", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if seen[ep.Addr(false)] {
			t.Fatalf("address %s handed out twice", ep.Addr(false))
		}
		seen[ep.Addr(false)] = true
	}
	if d := duplicateRules(savedRules(t, h.ns)); len(d) > 0 {
		t.Errorf("duplicate rules: %q", d)
	}
}

// TestNetworkLockFilesGo (issue 16 item 9): net rm removes the network's
// lock file, and a network made again under the same name locks as before.
func TestNetworkLockFilesGo(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		sb := testns.New(t, "sb")
		n := Network{Name: fmt.Sprintf("n%d", i), Subnet: netip.MustParsePrefix(fmt.Sprintf("10.97.%d.0/24", 80+i))}
		ep := mustAttach(t, h, sb, n, AttachOptions{})
		if err := h.Detach(ctx, ep); err != nil {
			t.Fatal(err)
		}
		if err := h.RemoveNetwork(ctx, n.Name); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(h.dir, "networks"))
	for _, e := range ents {
		t.Errorf("left in networks/ after removing every network: %s", e.Name())
	}
	n := Network{Name: "n0", Subnet: netip.MustParsePrefix("10.97.80.0/24")}
	ep := mustAttach(t, h, testns.New(t, "again"), n, AttachOptions{})
	if err := h.Detach(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveNetwork(ctx, "n0"); err != nil {
		t.Fatal(err)
	}
}
