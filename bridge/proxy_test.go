package bridge_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/pktcount"
	"github.com/sandnet/sandnet/internal/probe"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

// proxyLab is a bridge with three sandboxes on it: a asks, b answers, c
// stands by and counts the ARP frames the bridge floods to it.
type proxyLab struct {
	host      *netns.NS
	sbx       [3]*netns.NS
	addrs     [3]netip.Addr
	macs      [3]net.HardwareAddr
	ports     [3]string
	bystander *pktcount.Counter
}

func newProxyLab(t *testing.T) *proxyLab {
	ctx := context.Background()
	l := &proxyLab{host: testns.New(t, "host")}
	if _, _, err := bridge.Ensure(ctx, l.host, bridge.Config{Name: "snt-br0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.66.0.1/24")}}); err != nil {
		t.Fatal(err)
	}
	for i := range l.sbx {
		l.sbx[i] = testns.New(t, "sb")
		l.addrs[i] = netip.AddrFrom4([4]byte{10, 66, 0, byte(10 + i)})
		l.macs[i] = net.HardwareAddr{0x02, 0x42, 10, 66, 0, byte(10 + i)}
		l.ports[i] = "snt-p" + string(rune('a'+i))
		if _, err := veth.Create(ctx, l.host, veth.Pair{Name: l.ports[i], PeerName: "eth0", PeerNS: l.sbx[i], PeerMAC: l.macs[i]}); err != nil {
			t.Fatal(err)
		}
		// No IPv6 on either end: its multicast would blur the ARP counts.
		for _, s := range []struct {
			ns  *netns.NS
			dev string
		}{{l.host, l.ports[i]}, {l.sbx[i], "eth0"}} {
			if _, err := s.ns.Sysctl("net/ipv6/conf/"+s.dev+"/disable_ipv6", "1"); err != nil {
				t.Fatal(err)
			}
		}
		if err := bridge.AddPort(ctx, l.host, "snt-br0", l.ports[i]); err != nil {
			t.Fatal(err)
		}
		if err := iface.AddAddr(ctx, l.sbx[i], "eth0", netip.PrefixFrom(l.addrs[i], 24)); err != nil {
			t.Fatal(err)
		}
		if err := iface.Up(ctx, l.sbx[i], "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	c, err := pktcount.Open(l.sbx[2], "eth0", pktcount.ARP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l.bystander = c
	return l
}

// answer registers sandbox i's address and MAC with the bridge.
func (l *proxyLab) answer(t *testing.T, ctx context.Context, i int) {
	t.Helper()
	for _, err := range []error{
		bridge.SetPortFlag(ctx, l.host, l.ports[i], bridge.ProxyARPWiFi),
		iface.SetNeighbor(ctx, l.host, "snt-br0", l.addrs[i], l.macs[i]),
		bridge.AddFDB(ctx, l.host, l.ports[i], l.macs[i]),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// connect makes a TCP connection from sandbox a to to:port (after a
// forgets what it had resolved) and returns how many ARP frames the
// bystander received meanwhile.
func (l *proxyLab) connect(t *testing.T, to netip.Addr) int {
	t.Helper()
	if _, err := l.bystander.Read(); err != nil { // start from zero
		t.Fatal(err)
	}
	nl, _ := l.sbx[0].Netlink()
	link, _ := nl.LinkByName("eth0")
	neighs, _ := nl.NeighList(link.Attrs().Index, 0)
	for _, n := range neighs {
		nl.NeighDel(&n)
	}
	if _, err := probe.Connect(l.sbx[0], netip.AddrPortFrom(to, 7), 5*time.Second); err != nil {
		t.Fatalf("connecting to %s: %v", to, err)
	}
	n, err := l.bystander.Read()
	if err != nil {
		t.Fatal(err)
	}
	return n.Flooded()
}

func listen(t *testing.T, ns *netns.NS, addr netip.Addr) {
	t.Helper()
	ln, err := probe.Listen(ns, netip.AddrPortFrom(addr, 7))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
}

func TestProxyARPAnswersWithoutFlooding(t *testing.T) {
	l := newProxyLab(t)
	var said []string
	ctx := explain.With(context.Background(), func(cmd string) { said = append(said, cmd) })
	listen(t, l.sbx[1], l.addrs[1])

	// A plain bridge floods a's ARP request to every port.
	if n := l.connect(t, l.addrs[1]); n == 0 {
		t.Fatalf("a plain bridge flooded %d ARP frames to the bystander; the test cannot see floods", n)
	}

	for i := range l.sbx {
		l.answer(t, ctx, i)
	}
	if n := l.connect(t, l.addrs[1]); n != 0 {
		t.Errorf("with proxy_arp_wifi, the bystander got %d ARP frames; want 0 (the bridge answers)", n)
	}
	// b's answer asks for a in turn (a's request never reached b): the
	// bridge answers that one too, and b has a's MAC.
	got, err := iface.Neighbors(l.sbx[1], "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := got[l.addrs[0]]; !ok || e.MAC.String() != l.macs[0].String() {
		t.Errorf("b's neighbour table %v, want %s at %s", got, l.addrs[0], l.macs[0])
	}

	// An address the bridge does not know (set by hand inside b) is
	// flooded, and so still resolves.
	extra := netip.MustParseAddr("10.66.0.99")
	if err := iface.AddAddr(ctx, l.sbx[1], "eth0", netip.PrefixFrom(extra, 24)); err != nil {
		t.Fatal(err)
	}
	listen(t, l.sbx[1], extra)
	if n := l.connect(t, extra); n == 0 {
		t.Errorf("an unknown address was answered without a flood")
	}

	// Without the FDB entry the bridge does not know the port behind the
	// MAC and floods again: the static entry is what keeps a silent
	// sandbox answerable after the learned one ages out. Learning is off
	// on b's port meanwhile: a frame of b's still on its way (the last
	// connection closing) would otherwise teach the bridge the MAC again.
	setLearning(t, l, 1, false)
	if err := bridge.DelFDB(ctx, l.host, l.ports[1], l.macs[1]); err != nil {
		t.Fatal(err)
	}
	if ok, err := bridge.HasStaticFDB(l.host, l.ports[1], l.macs[1]); err != nil || ok {
		t.Fatalf("HasStaticFDB after DelFDB = %v, %v", ok, err)
	}
	if n := l.connect(t, l.addrs[1]); n == 0 {
		t.Errorf("without b's FDB entry the bridge still answered; the entry looks unneeded")
	}
	if err := bridge.AddFDB(ctx, l.host, l.ports[1], l.macs[1]); err != nil {
		t.Fatal(err)
	}
	if ok, err := bridge.HasStaticFDB(l.host, l.ports[1], l.macs[1]); err != nil || !ok {
		t.Fatalf("HasStaticFDB after AddFDB = %v, %v", ok, err)
	}
	setLearning(t, l, 1, true)

	// neigh_suppress does not answer requests from a suppressed port:
	// with it on a's port as well, a's request is flooded again.
	nl, _ := l.host.Netlink()
	pa, _ := nl.LinkByName(l.ports[0])
	if err := nl.LinkSetBrNeighSuppress(pa, true); err != nil {
		t.Fatal(err)
	}
	if n := l.connect(t, l.addrs[1]); n == 0 {
		t.Errorf("the bridge answered a request from a neigh_suppress port; this kernel differs from the one sandnet's design was checked on")
	}
	if err := nl.LinkSetBrNeighSuppress(pa, false); err != nil {
		t.Fatal(err)
	}

	flags, err := bridge.PortFlags(l.host, l.ports[1])
	if err != nil || !flags.ProxyArpWiFi {
		t.Errorf("PortFlags = %+v, %v; want ProxyArpWiFi", flags, err)
	}
	pb, _ := nl.LinkByName(l.ports[1])
	if err := bridge.SetPortFlagLink(ctx, l.host, nl, pb, bridge.ProxyARPWiFi, false); err != nil {
		t.Fatal(err)
	}
	if flags, err := bridge.PortFlags(l.host, l.ports[1]); err != nil || flags.ProxyArpWiFi {
		t.Errorf("PortFlags after off = %+v, %v", flags, err)
	}
	if _, err := bridge.PortFlags(l.host, "snt-nope"); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("PortFlags of a missing port: %v, want ErrNotFound", err)
	}
	for _, want := range []string{
		"link set dev snt-pb type bridge_slave proxy_arp_wifi on",
		"neigh replace 10.66.0.11 lladdr 02:42:0a:42:00:0b dev snt-br0 nud permanent",
		"bridge fdb replace 02:42:0a:42:00:0b dev snt-pb master static",
		"bridge fdb del 02:42:0a:42:00:0b dev snt-pb master",
	} {
		if !strings.Contains(strings.Join(said, "\n"), want) {
			t.Errorf("explain did not say %q", want)
		}
	}
	// Deleting a missing entry or a missing port's entry is success.
	if err := bridge.DelFDB(ctx, l.host, "snt-nope", l.macs[1]); err != nil {
		t.Error(err)
	}
}

func TestMulticastQuerier(t *testing.T) {
	host := testns.New(t, "host")
	ctx := context.Background()
	if _, _, err := bridge.Ensure(ctx, host, bridge.Config{Name: "snt-br0"}); err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{true, false, true} {
		if err := bridge.SetMulticastQuerier(ctx, host, "snt-br0", on); err != nil {
			t.Fatal(err)
		}
		got, err := bridge.MulticastQuerier(host, "snt-br0")
		if err != nil || got != on {
			t.Fatalf("MulticastQuerier after setting %v = %v, %v", on, got, err)
		}
	}
	out := testns.Run(t, host, "ip", "-d", "link", "show", "snt-br0")
	if !strings.Contains(out, "mcast_querier 1") {
		t.Errorf("ip -d link show does not say mcast_querier 1:\n%s", out)
	}
	if err := bridge.SetMulticastQuerier(ctx, host, "snt-nope", true); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("on a missing bridge: %v, want ErrNotFound", err)
	}
}

// setLearning turns MAC learning on or off on sandbox i's bridge port.
func setLearning(t *testing.T, l *proxyLab, i int, on bool) {
	t.Helper()
	h, err := l.host.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName(l.ports[i])
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetLearning(link, on); err != nil {
		t.Fatal(err)
	}
}
