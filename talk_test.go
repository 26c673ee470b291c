package sandnet

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/pktcount"
	"github.com/sandnet/sandnet/internal/probe"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

// talkN is how many sandboxes TestManySandboxesFirstPacket attaches before
// the fresh one (the benchmark's -talk mode goes to 1000 and beyond).
const talkN = 200

// TestManySandboxesFirstPacket attaches talkN sandboxes to one network,
// then a fresh one, whose first ICMP echo and first TCP connect to the
// gateway and to a random earlier sandbox must be answered, each within
// probe.FirstWait (below the kernel's first ARP and SYN retries, so no
// retry is involved), while no ARP frame reaches a bystander sandbox: the
// bridge answers for the sandboxes, and the sandbox knows its gateway.
func TestManySandboxesFirstPacket(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	n := Network{Name: "talk", Subnet: netip.MustParsePrefix("10.98.0.0/16")}
	sbx := make([]*netns.NS, talkN+1)
	eps := make([]*Endpoint, talkN+1)
	for i := range sbx {
		sbx[i] = testns.New(t, "talk")
	}
	for i := range talkN {
		ep, err := h.AttachNS(ctx, sbx[i], n, AttachOptions{})
		if err != nil {
			t.Fatalf("attaching sandbox %d: %v", i, err)
		}
		eps[i] = ep
	}
	gw := eps[0].Gateway
	peer := rand.IntN(talkN)
	bystander := (peer + 1) % talkN
	peerAddr := eps[peer].Addr(false)
	for _, l := range []struct {
		ns   *netns.NS
		addr netip.Addr
	}{{h.ns, gw}, {sbx[peer], peerAddr}} {
		ln, err := probe.Listen(l.ns, netip.AddrPortFrom(l.addr, 7))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	arp, err := pktcount.Open(sbx[bystander], "eth0", pktcount.ARP)
	if err != nil {
		t.Fatal(err)
	}
	defer arp.Close()
	// /proc/net/softnet_stat is not per network namespace: it is the
	// machine's, per CPU. Its drop column counts packets any CPU threw
	// away because its backlog (netdev_max_backlog) was full, which is how
	// a flooded bridge loses the answer. No rise over the fresh sandbox's
	// attach and first packets means nothing was dropped anywhere on the
	// machine meanwhile; a rise may also come from other programs running
	// on it, so the failure says so.
	drops0, err := pktcount.SoftnetDropped()
	if err != nil {
		t.Fatal(err)
	}

	fresh, err := h.AttachNS(ctx, sbx[talkN], n, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eps[talkN] = fresh
	for _, dst := range []netip.Addr{gw, peerAddr} {
		if _, err := probe.FirstEcho(sbx[talkN], dst, probe.FirstWait); err != nil {
			t.Errorf("fresh sandbox: %v", err)
		}
		if _, err := probe.Connect(sbx[talkN], netip.AddrPortFrom(dst, 7), probe.FirstWait); err != nil {
			t.Errorf("fresh sandbox: %v", err)
		}
	}
	drops1, err := pktcount.SoftnetDropped()
	if err != nil {
		t.Fatal(err)
	}
	got, err := arp.Read()
	if err != nil {
		t.Fatal(err)
	}
	if got.Flooded() != 0 {
		t.Errorf("a bystander sandbox received %s ARP frames while the fresh one attached and reached the gateway and sandbox %d; the bridge floods what it should answer", got, peer)
	}
	if drops1 != drops0 {
		t.Errorf("the machine's softnet drop counter rose by %d during the fresh sandbox's attach and first packets (it counts every CPU's backlog drops, ours or other programs')", drops1-drops0)
	}

	// The same on a flooding network: the bystander sees the fresh
	// sandbox's requests, so the count above would see a flood.
	flood := Network{Name: "talk-flood", Subnet: netip.MustParsePrefix("10.99.8.0/24"), Internal: true, NoNeighborProxy: true}
	for i := range 3 {
		if _, err := h.AttachNS(ctx, sbx[i], flood, AttachOptions{IfName: "eth1"}); err != nil {
			t.Fatal(err)
		}
	}
	fc, err := pktcount.Open(sbx[2], "eth1", pktcount.ARP)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if _, err := probe.FirstEcho(sbx[0], netip.MustParseAddr("10.99.8.1"), probe.FirstWait); err != nil {
		t.Fatal(err)
	}
	if got, _ := fc.Read(); got.Broadcast == 0 {
		t.Errorf("on a NoNeighborProxy network the bystander saw %s; want the gateway's ARP request", got)
	}
}

// TestCheckRepairNeighbors removes each entry that answers address
// resolution for an endpoint; Check names it, Repair puts it back, Detach
// and GC take the bridge device's entries away.
func TestCheckRepairNeighbors(t *testing.T) {
	h := newTestHost(t)
	var said []string
	ctx := explain.With(context.Background(), func(cmd string) { said = append(said, cmd) })
	n := Network{Name: "mend-neigh", Subnet: netip.MustParsePrefix("10.99.9.0/24"), Subnet6: netip.MustParsePrefix("fd00:99:9::/64")}
	a, b := testns.New(t, "a"), testns.New(t, "b")
	epA, err := h.AttachNS(ctx, a, n, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.AttachNS(ctx, b, n, AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	nrec, err := h.readNetwork(n.Name)
	if err != nil {
		t.Fatal(err)
	}
	br := nrec.Network.Bridge
	mac, _ := net.ParseMAC(epA.MAC)
	brLink, err := h.ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	l, err := brLink.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	brMAC := l.Attrs().HardwareAddr
	a4, a6 := epA.Addr(false), epA.Addr(true)

	// What attach made.
	onBridge, _ := iface.Neighbors(h.ns, br)
	inA, _ := iface.Neighbors(a, epA.IfName)
	for _, c := range []struct {
		what string
		e    iface.Neighbor
		mac  net.HardwareAddr
	}{
		{"bridge entry for " + a4.String(), onBridge[a4], mac},
		{"bridge entry for " + a6.String(), onBridge[a6], mac},
		{"gateway entry in a", inA[epA.Gateway], brMAC},
		{"gateway6 entry in a", inA[epA.Gateway6], brMAC},
	} {
		if !c.e.Permanent || c.e.MAC.String() != c.mac.String() {
			t.Errorf("%s = %+v, want permanent at %s", c.what, c.e, c.mac)
		}
	}
	if rep, err := h.Check(ctx, epA); err != nil || !rep.OK() {
		t.Fatalf("Check after attach: %v %v", rep.Problems, err)
	}
	for _, want := range []string{"proxy_arp_wifi on", "master static", "nud permanent", "router_solicitations=0"} {
		if !slices.ContainsFunc(said, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("explain did not say %q", want)
		}
	}

	// Remove each piece; Check names it, Repair puts it back.
	breaks := []struct {
		obj  Object
		name string
		do   func() error
	}{
		{ObjNeighbor, a4.String() + " dev " + br, func() error { return iface.DelNeighbor(ctx, h.ns, br, a4, nil) }},
		{ObjNeighbor, a6.String() + " dev " + br, func() error {
			return iface.SetNeighbor(ctx, h.ns, br, a6, net.HardwareAddr{2, 0, 0, 0, 0, 9})
		}},
		{ObjNeighbor, "gateway " + epA.Gateway.String(), func() error { return iface.DelNeighbor(ctx, a, epA.IfName, epA.Gateway, nil) }},
		{ObjNeighbor, "gateway " + epA.Gateway6.String(), func() error { return iface.DelNeighbor(ctx, a, epA.IfName, epA.Gateway6, nil) }},
		{ObjNeighbor, epA.HostIfName, func() error { return bridge.DelFDB(ctx, h.ns, epA.HostIfName, mac) }},
		{ObjNeighbor, epA.HostIfName + " proxy_arp_wifi", func() error {
			port, err := brLink.LinkByName(epA.HostIfName)
			if err != nil {
				return err
			}
			return bridge.SetPortFlagLink(ctx, h.ns, brLink, port, bridge.ProxyARPWiFi, false)
		}},
	}
	for _, bk := range breaks {
		if err := bk.do(); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := h.Check(ctx, epA)
	if err != nil {
		t.Fatal(err)
	}
	for _, bk := range breaks {
		if !slices.ContainsFunc(rep.Problems, func(p Problem) bool { return p.Object == bk.obj && p.Name == bk.name && p.Repairable }) {
			t.Errorf("Check did not report %s %s; got %v", bk.obj, bk.name, rep.Problems)
		}
	}
	if len(rep.Problems) != len(breaks) {
		t.Errorf("Check reported %d problems, want %d: %v", len(rep.Problems), len(breaks), rep.Problems)
	}
	if _, err := h.Repair(ctx, epA); err != nil {
		t.Fatalf("Repair: %v", err)
	}
	if rep, err := h.Check(ctx, epA); err != nil || !rep.OK() {
		t.Fatalf("Check after Repair: %v %v", rep.Problems, err)
	}

	// A flush of the bridge device's table (ip neigh flush dev BR, or the
	// bridge going down and up) is put back for every endpoint at once.
	nl, _ := h.ns.Netlink()
	nl.LinkSetDown(l)
	nl.LinkSetUp(l)
	rr, err := h.Reconcile(ctx)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if len(rr.Repaired) < 2 {
		t.Errorf("Reconcile repaired %v; want both endpoints' entries", rr.Repaired)
	}
	if onBridge, _ := iface.Neighbors(h.ns, br); len(onBridge) < 4 || !onBridge[a4].Permanent {
		t.Errorf("bridge entries after Reconcile: %v", onBridge)
	}

	// Detach removes a's entries from the bridge device; GC those of b,
	// whose namespace went away behind sandnet's back.
	if err := h.Detach(ctx, epA); err != nil {
		t.Fatal(err)
	}
	onBridge, _ = iface.Neighbors(h.ns, br)
	if _, ok := onBridge[a4]; ok {
		t.Errorf("a's bridge entry survived Detach: %v", onBridge)
	}
	if _, ok := onBridge[a6]; ok {
		t.Errorf("a's IPv6 bridge entry survived Detach: %v", onBridge)
	}
	if err := netns.Delete(ctx, b.Name()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if onBridge, _ := iface.Neighbors(h.ns, br); len(onBridge) != 0 {
		for a, e := range onBridge {
			if e.Permanent {
				t.Errorf("a permanent bridge entry survived GC: %s %v", a, e)
			}
		}
	}
}

// TestIPv6SolicitationsReachOnlyTheTarget: on an IPv6 network the bridge
// is the multicast querier, so a neighbour solicitation reaches only the
// sandbox that holds the address asked for, not a bystander; an address
// set by hand inside a sandbox still resolves.
func TestIPv6SolicitationsReachOnlyTheTarget(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	n := Network{Name: "talk6", Subnet: netip.MustParsePrefix("10.99.10.0/24"), Subnet6: netip.MustParsePrefix("fd00:99:10::/64")}
	var sbx [3]*netns.NS
	var eps [3]*Endpoint
	for i := range sbx {
		sbx[i] = testns.New(t, "talk6")
		ep, err := h.AttachNS(ctx, sbx[i], n, AttachOptions{})
		if err != nil {
			t.Fatal(err)
		}
		eps[i] = ep
	}
	asker, target, bystander := sbx[0], sbx[1], sbx[2]
	to := netip.AddrPortFrom(eps[1].Addr(true), 7)
	ln, err := probe.Listen(target, to)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cnt, err := pktcount.Open(bystander, "eth0", pktcount.All)
	if err != nil {
		t.Fatal(err)
	}
	defer cnt.Close()
	if v, err := asker.ReadSysctl("net.ipv6.conf.eth0.router_solicitations"); err != nil || v != "0" {
		t.Errorf("router_solicitations in the sandbox = %q, %v; want 0", v, err)
	}
	// connect flushes what the asker has learned, connects, and returns the
	// solicitations the bystander received meanwhile.
	connect := func(dst netip.AddrPort) int {
		t.Helper()
		nl, _ := asker.Netlink()
		l, _ := nl.LinkByName("eth0")
		neighs, _ := nl.NeighList(l.Attrs().Index, netlink.FAMILY_V6)
		for _, e := range neighs {
			if e.State&netlink.NUD_PERMANENT == 0 {
				nl.NeighDel(&e)
			}
		}
		cnt.Read()
		if _, err := probe.Connect(asker, dst, probe.FirstWait); err != nil {
			t.Fatalf("connecting to %s: %v", dst, err)
		}
		got, err := cnt.Read()
		if err != nil {
			t.Fatal(err)
		}
		return got.Solicit
	}
	// The bridge floods until its first query has been answered (the
	// query response interval, 10 s): wait for that, then never again.
	deadline := time.Now().Add(30 * time.Second)
	for connect(to) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the bystander still receives the solicitations for %s", to.Addr())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for range 3 {
		if k := connect(to); k != 0 {
			t.Errorf("the bystander received %d solicitations for %s once the querier was in place", k, to.Addr())
		}
	}
	// An address sandnet does not know, set by hand in the target.
	extra := netip.MustParseAddr("fd00:99:10::99")
	if err := iface.AddAddr(ctx, target, "eth0", netip.PrefixFrom(extra, 64)); err != nil {
		t.Fatal(err)
	}
	ln2, err := probe.Listen(target, netip.AddrPortFrom(extra, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	// It resolves (its solicited-node group is unknown until the target's
	// MLD report is in, so the first solicitation may be flooded; the
	// first contact with a freshly added IPv6 address sometimes takes a
	// second try here with or without the querier, so it gets 3 s).
	if _, err := probe.Connect(asker, netip.AddrPortFrom(extra, 7), 3*time.Second); err != nil {
		t.Errorf("an address set by hand does not resolve: %v", err)
	}

	// Check names a bridge that stopped being the querier; Repair fixes it.
	nrec, _ := h.readNetwork(n.Name)
	if err := bridge.SetMulticastQuerier(ctx, h.ns, nrec.Network.Bridge, false); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Check(ctx, eps[0])
	if err != nil || !slices.ContainsFunc(rep.Problems, func(p Problem) bool { return p.Object == ObjNeighbor && p.Name == nrec.Network.Bridge }) {
		t.Fatalf("Check with the querier off: %v, %v", rep.Problems, err)
	}
	if _, err := h.Repair(ctx, eps[0]); err != nil {
		t.Fatal(err)
	}
	if on, err := bridge.MulticastQuerier(h.ns, nrec.Network.Bridge); err != nil || !on {
		t.Errorf("querier after Repair = %v, %v", on, err)
	}
}

// TestRouterSolicitationsOff: a sandbox on an IPv6 network whose bridge
// answers address resolution sends no router solicitations, also when its
// interface's name has a dot (the sysctl path keeps the dot) and after a
// Repair that made its veth pair anew.
func TestRouterSolicitationsOff(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	n := Network{Name: "quiet", Subnet6: netip.MustParsePrefix("fd00:99:7::/64")}
	sb := testns.New(t, "q")
	ep, err := h.AttachNS(ctx, sb, n, AttachOptions{IfName: "eth0.50"})
	if err != nil {
		t.Fatal(err)
	}
	rs := func(when string) {
		t.Helper()
		v, err := sb.ReadSysctl("net/ipv6/conf/eth0.50/router_solicitations")
		if err != nil || v != "0" {
			t.Errorf("%s: router_solicitations of eth0.50 = %q, %v; want 0", when, v, err)
		}
	}
	rs("after attach")
	if err := veth.Delete(ctx, sb, ep.IfName); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Repair(ctx, ep); err != nil {
		t.Fatal(err)
	}
	rs("after a repair that made the veth pair anew")
}

// TestAdoptedBridgeNoGatewayEntry: on a bridge sandnet adopted (made by
// someone else), whose MAC the kernel changes as ports come and go, a
// sandbox gets no permanent entry for its gateway, Check does not ask for
// one and Repair does not put one back; the bridge still answers for the
// sandbox's addresses.
func TestAdoptedBridgeNoGatewayEntry(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	testns.Run(t, h.ns, "ip", "link", "add", "h20-adopt", "type", "bridge")
	t.Cleanup(func() { testns.Try(h.ns, "ip", "link", "del", "h20-adopt") })
	n := Network{Name: "adopted", Bridge: "h20-adopt", Subnet: netip.MustParsePrefix("10.99.8.0/24"), Subnet6: netip.MustParsePrefix("fd00:99:8::/64")}
	a := testns.New(t, "a")
	ep, err := h.AttachNS(ctx, a, n, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noGateway := func(when string) {
		t.Helper()
		inA, err := iface.Neighbors(a, ep.IfName)
		if err != nil {
			t.Fatal(err)
		}
		for _, gw := range []netip.Addr{ep.Gateway, ep.Gateway6} {
			if e, ok := inA[gw]; ok && e.Permanent {
				t.Errorf("%s: permanent entry for gateway %s at %s on an adopted bridge", when, gw, e.MAC)
			}
		}
	}
	noGateway("after attach")
	if onBridge, _ := iface.Neighbors(h.ns, n.Bridge); !onBridge[ep.Addr(false)].Permanent {
		t.Errorf("no permanent bridge entry for %s", ep.Addr(false))
	}
	if rep, err := h.Check(ctx, ep); err != nil || !rep.OK() {
		t.Errorf("Check: %v %v", rep.Problems, err)
	}
	if err := veth.Delete(ctx, a, ep.IfName); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Repair(ctx, ep); err != nil {
		t.Fatal(err)
	}
	noGateway("after repair")
	mustPing(t, a, ep.Gateway)
}

// TestRetriedDetachKeepsOthersNeighbors: a Detach that fails half-way
// keeps the endpoint's lease with its record, so its address goes to no
// other sandbox until a retried Detach finishes, and that retry deletes no
// other endpoint's entry on the bridge.
func TestRetriedDetachKeepsOthersNeighbors(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	n := Network{Name: "retry", Subnet: netip.MustParsePrefix("10.99.6.0/24")}
	a, b := testns.New(t, "a"), testns.New(t, "b")
	epA, err := h.AttachNS(ctx, a, n, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(epA.ResolvConf) == 0 {
		t.Fatal("no resolv.conf recorded: nothing to make the detach fail with")
	}
	// A directory where the resolv.conf was: removing it fails.
	rc := epA.ResolvConf[0]
	if err := os.Remove(rc); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(rc, "h20-busy"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rc) })
	if err := h.Detach(ctx, epA); err == nil {
		t.Fatal("detach with a directory for resolv.conf succeeded")
	}
	epB, err := h.AttachNS(ctx, b, n, AttachOptions{IP: epA.Addr(false)})
	if err == nil {
		t.Logf("b took %s while a's detach was unfinished", epA.Addr(false))
	} else if epB, err = h.AttachNS(ctx, b, n, AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(rc); err != nil {
		t.Fatal(err)
	}
	if err := h.Detach(ctx, epA); err != nil {
		t.Fatalf("retried detach: %v", err)
	}
	onBridge, err := iface.Neighbors(h.ns, epB.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if e := onBridge[epB.Addr(false)]; !e.Permanent || e.MAC.String() != epB.MAC {
		t.Errorf("b's bridge entry for %s after a's retried detach = %+v, want permanent at %s", epB.Addr(false), e, epB.MAC)
	}
	if rep, err := h.Check(ctx, epB); err != nil || !rep.OK() {
		t.Errorf("Check b: %v %v", rep.Problems, err)
	}
}

// TestSnoopingOnlyWhereTheBridgeIsTheQuerier: a bridge sandnet makes snoops
// multicast only where it is the querier (an IPv6 network answering
// address resolution); elsewhere nothing would serve the snooping (the
// bridge floods without a querier), and it costs every attach a walk of
// every live port's timers.
func TestSnoopingOnlyWhereTheBridgeIsTheQuerier(t *testing.T) {
	h := newTestHost(t)
	nl, err := h.ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n    Network
		want bool
	}{
		{Network{Name: "v4", Subnet: netip.MustParsePrefix("10.97.1.0/24")}, false},
		{Network{Name: "v6", Subnet6: netip.MustParsePrefix("fd00:97:1::/64")}, true},
		{Network{Name: "v6flood", Subnet6: netip.MustParsePrefix("fd00:97:2::/64"), NoNeighborProxy: true}, false},
	} {
		mustAttach(t, h, testns.New(t, "snoop"), c.n, AttachOptions{})
		nrec, err := h.readNetwork(c.n.Name)
		if err != nil {
			t.Fatal(err)
		}
		l, err := nl.LinkByName(nrec.Network.Bridge)
		if err != nil {
			t.Fatal(err)
		}
		br, ok := l.(*netlink.Bridge)
		if !ok || br.MulticastSnooping == nil {
			t.Fatalf("%s: no bridge attributes (%T)", c.n.Name, l)
		}
		if got := *br.MulticastSnooping; got != c.want {
			t.Errorf("network %s: bridge snoops %v, want %v", c.n.Name, got, c.want)
		}
	}
}
