package sandnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/internal/probe"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/overlay"
)

var underlay = []netip.Addr{
	netip.MustParseAddr("192.168.60.11"),
	netip.MustParseAddr("192.168.60.12"),
	netip.MustParseAddr("192.168.60.13"),
}

// overlayNet is the overlay as host i (0-based) defines it: its own underlay
// address and address range, the given peers.
func overlayNet(i int, peers ...netip.Addr) Network {
	return Network{
		Name: "ov", Driver: DriverOverlay, VNI: 4242,
		Subnet:   pfx("10.42.0.0/24"),
		IPRange:  pfx("10.42.0." + strconv.Itoa(64*(i+1)) + "/26"),
		Underlay: underlay[i],
		Peers:    peers,
	}
}

func TestOverlayAcrossHosts(t *testing.T) {
	ctx := context.Background()
	seg := testns.NewSegment(t, "sw")
	var hosts []*Host
	for i, tag := range []string{"h1", "h2", "h3"} {
		hosts = append(hosts, labHost(t, seg, tag, underlay[i].String()+"/24"))
	}
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	a, b, c := testns.New(t, "a"), testns.New(t, "b"), testns.New(t, "c")

	// Hosts 1 and 2 know each other; host 3 joins later.
	epA := mustAttach(t, h1, a, overlayNet(0, underlay[1]), AttachOptions{})
	epB := mustAttach(t, h2, b, overlayNet(1, underlay[0]), AttachOptions{})
	if epA.MTU != 1450 || epA.Gateway.IsValid() || len(epA.Routes) != 0 {
		t.Fatalf("endpoint = mtu %d gateway %v routes %v, want mtu 1450 (1500 - VXLAN's 50), no gateway, no routes", epA.MTU, epA.Gateway, epA.Routes)
	}
	if !pfx("10.42.0.64/26").Contains(epA.Addr(false)) || !pfx("10.42.0.128/26").Contains(epB.Addr(false)) {
		t.Fatalf("addresses %s and %s are not from each host's range", epA.Addr(false), epB.Addr(false))
	}
	n1, err := h1.Network("ov")
	if err != nil {
		t.Fatal(err)
	}
	dev := vxlanName("ov")
	nl, _ := h1.NS().Netlink()
	l, err := nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok || vx.VxlanId != 4242 || vx.Port != 4789 || !vx.SrcAddr.Equal(underlay[0].AsSlice()) || vx.MTU != 1450 {
		t.Fatalf("vxlan %s = %+v, want VNI 4242 port 4789 local %s mtu 1450", dev, l, underlay[0])
	}
	if br, _ := nl.LinkByName(n1.Bridge); br == nil || vx.MasterIndex != br.Attrs().Index {
		t.Fatalf("vxlan %s is not a port of bridge %s", dev, n1.Bridge)
	}
	if peers, _ := overlay.Peers(h1.NS(), dev); !slices.Equal(peers, []netip.Addr{underlay[1]}) {
		t.Fatalf("host 1 floods to %v, want [%s]", peers, underlay[1])
	}

	// One segment: ping, TCP, and full-size packets that must not fragment.
	mustPing(t, a, epB.Addr(false))
	listenTCP(t, b, netip.AddrPortFrom(epB.Addr(false), 8080).String())
	if err := dialEcho(a, netip.AddrPortFrom(epB.Addr(false), 8080).String()); err != nil {
		t.Fatalf("TCP from host 1's sandbox to host 2's: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := probe.PingDF(pctx, a, epB.Addr(false), 1422); err != nil {
		t.Fatalf("a 1450-byte packet (the overlay MTU) does not cross: %v", err)
	}
	tooBig, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	if err := probe.PingDF(tooBig, a, epB.Addr(false), 1423); err == nil {
		t.Fatalf("a 1451-byte unfragmentable packet crosses an overlay whose MTU is 1450: the MTU proof proves nothing")
	}
	transfer(t, a, b, netip.AddrPortFrom(epB.Addr(false), 9000), 8<<20)

	// Host 3 joins with no peers: unreachable until the peers are added on
	// both sides, as a control plane would.
	epC := mustAttach(t, h3, c, overlayNet(2), AttachOptions{})
	mustNotPing(t, a, epC.Addr(false))
	for _, p := range []struct {
		h    *Host
		peer netip.Addr
	}{{h1, underlay[2]}, {h3, underlay[0]}, {h2, underlay[2]}, {h3, underlay[1]}} {
		if err := p.h.AddPeer(ctx, "ov", p.peer); err != nil {
			t.Fatal(err)
		}
	}
	if err := h1.AddPeer(ctx, "ov", underlay[2]); err != nil {
		t.Fatalf("adding a peer twice: %v", err)
	}
	mustPing(t, a, epC.Addr(false))
	mustPing(t, b, epC.Addr(false))
	if n, _ := h1.Network("ov"); !slices.Equal(n.Peers, underlay[1:]) {
		t.Fatalf("host 1's record lists peers %v, want %v", n.Peers, underlay[1:])
	}

	// Hosts 1 and 3 drop each other (as a control plane does: with learning,
	// a host that still sends would be learnt again): host 1's sandbox no
	// longer reaches host 3's, even with its MAC learnt and in the ARP
	// cache; host 2's still does.
	if err := h1.RemovePeer(ctx, "ov", underlay[2]); err != nil {
		t.Fatal(err)
	}
	if err := h3.RemovePeer(ctx, "ov", underlay[0]); err != nil {
		t.Fatal(err)
	}
	if err := h1.RemovePeer(ctx, "ov", underlay[2]); err != nil {
		t.Fatalf("removing a peer twice: %v", err)
	}
	entries, _ := overlay.FDB(h1.NS(), dev)
	for _, e := range entries {
		if e.Dst == underlay[2] {
			t.Fatalf("host 1's FDB still sends %s to the removed peer", e.MAC)
		}
	}
	mustNotPing(t, a, epC.Addr(false))
	mustPing(t, b, epC.Addr(false))
	if n, _ := h1.Network("ov"); !slices.Equal(n.Peers, underlay[1:2]) {
		t.Fatalf("host 1's record lists peers %v after removal, want [%s]", n.Peers, underlay[1])
	}

	// Teardown: VXLAN device (and its FDB) and bridge go with the network.
	for h, ep := range map[*Host]*Endpoint{h1: epA, h2: epB, h3: epC} {
		if err := h.Detach(ctx, ep); err != nil {
			t.Fatal(err)
		}
		if err := h.RemoveNetwork(ctx, "ov"); err != nil {
			t.Fatal(err)
		}
		if got := linksOf(t, h.NS()); len(got) != 1 {
			t.Fatalf("host %s links after removing the network = %v, want only eth0", h.NS(), got)
		}
		if left := labResidue(t, h); len(left) > 0 {
			t.Fatalf("left behind: %v", left)
		}
	}
}

// transfer sends size random bytes over TCP from client to a listener in
// server and checks that all of them arrive intact.
func transfer(t *testing.T, client, server *netns.NS, addr netip.AddrPort, size int) {
	t.Helper()
	var ln net.Listener
	if err := server.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		done <- result{n, h.Sum(nil), err}
	}()
	data := make([]byte, size)
	rand.Read(data)
	var c net.Conn
	if err := client.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr.String(), 3*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	if _, err := c.Write(data); err != nil {
		t.Fatalf("sending %d bytes: %v", size, err)
	}
	c.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("receiving: %v", r.err)
	}
	want := sha256.Sum256(data)
	if r.n != int64(size) || !bytes.Equal(r.sum, want[:]) {
		t.Fatalf("received %d bytes (sha256 %x), want %d (%x)", r.n, r.sum, size, want)
	}
	t.Logf("%d MB over the overlay in %v", size>>20, time.Since(start).Round(time.Millisecond))
}

func TestOverlayValidation(t *testing.T) {
	base := overlayNet(0, underlay[1])
	cases := []struct {
		name string
		edit func(*Network)
	}{
		{"no VNI", func(n *Network) { n.VNI = 0 }},
		{"VNI too big", func(n *Network) { n.VNI = 1 << 24 }},
		{"no underlay and no peers", func(n *Network) { n.Underlay, n.Peers = netip.Addr{}, nil }},
		{"underlay unspecified", func(n *Network) { n.Underlay = netip.IPv4Unspecified() }},
		{"port out of range", func(n *Network) { n.VXLANPort = 70000 }},
		{"peer is self", func(n *Network) { n.Peers = []netip.Addr{underlay[0]} }},
		{"peer of other family", func(n *Network) { n.Peers = []netip.Addr{netip.MustParseAddr("fd00::1")} }},
		{"peer unspecified", func(n *Network) { n.Peers = []netip.Addr{netip.IPv4Unspecified()} }},
		{"parent on overlay", func(n *Network) { n.Parent = "eth0" }},
	}
	for _, tc := range cases {
		n := base
		tc.edit(&n)
		if _, err := n.withDefaults(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
	n, err := Network{Name: "b", Peers: []netip.Addr{underlay[1]}}.withDefaults()
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("peers on a bridge network: %v, err = %v, want ErrInvalid", n, err)
	}
	n, err = overlayNet(0, underlay[2], underlay[1], underlay[2]).withDefaults()
	if err != nil || n.VXLANPort != 4789 || !slices.Equal(n.Peers, underlay[1:]) {
		t.Errorf("defaults: %+v, %v; want port 4789 and peers sorted without duplicates", n, err)
	}
}

func TestOverlayConflictsOnOneHost(t *testing.T) {
	ctx := context.Background()
	seg := testns.NewSegment(t, "sw")
	h := labHost(t, seg, "h1", "192.168.60.11/24")
	if _, err := h.CreateNetwork(ctx, overlayNet(0)); err != nil {
		t.Fatal(err)
	}
	// Overlapping address ranges on one host are refused (the subnets overlap).
	o := overlayNet(0)
	o.Name, o.VNI, o.Subnet, o.IPRange = "ov2", 4243, pfx("10.42.0.0/16"), pfx("10.42.0.64/27")
	if _, err := h.CreateNetwork(ctx, o); !errors.Is(err, ErrExists) {
		t.Fatalf("overlapping range: err = %v, want ErrExists", err)
	}
	// So is a second network with the same VNI.
	o = overlayNet(0)
	o.Name, o.Subnet, o.IPRange = "ov3", pfx("10.43.0.0/24"), netip.Prefix{}
	if _, err := h.CreateNetwork(ctx, o); !errors.Is(err, ErrExists) {
		t.Fatalf("same VNI: err = %v, want ErrExists", err)
	}
	// An underlay address the host does not have, an MTU the underlay cannot carry.
	o.VNI, o.Underlay = 4244, netip.MustParseAddr("192.168.60.99")
	if _, err := h.CreateNetwork(ctx, o); !errors.Is(err, ErrNotFound) {
		t.Fatalf("foreign underlay: err = %v, want ErrNotFound", err)
	}
	o.Underlay, o.MTU = underlay[0], 1480
	if _, err := h.CreateNetwork(ctx, o); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mtu 1480 over a 1500 underlay: err = %v, want ErrInvalid", err)
	}
	// Peers only on overlays, and only on networks that exist.
	if err := h.AddPeer(ctx, "nope", underlay[1]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("peer on a missing network: err = %v, want ErrNotFound", err)
	}
	if err := h.AddPeer(ctx, "ov", underlay[0]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("self as peer: err = %v, want ErrInvalid", err)
	}
	if err := h.RemoveNetwork(ctx, "ov"); err != nil {
		t.Fatal(err)
	}
	if got := linksOf(t, h.NS()); len(got) != 1 {
		t.Fatalf("host links = %v, want only eth0", got)
	}
}

// TestOverlayUnderlayDefault: an overlay that names peers but not its
// underlay address takes the source of the host's route to the first peer
// (ip route get PEER), works across hosts, and is the same network when
// defined again the same way; with no route to the peer it fails with a
// typed error and leaves nothing.
func TestOverlayUnderlayDefault(t *testing.T) {
	ctx := context.Background()
	seg := testns.NewSegment(t, "sw")
	h1 := labHost(t, seg, "h1", underlay[0].String()+"/24")
	h2 := labHost(t, seg, "h2", underlay[1].String()+"/24")
	a, b := testns.New(t, "a"), testns.New(t, "b")
	n1, n2 := overlayNet(0, underlay[1]), overlayNet(1, underlay[0])
	n1.Underlay, n2.Underlay = netip.Addr{}, netip.Addr{}
	epA := mustAttach(t, h1, a, n1, AttachOptions{})
	epB := mustAttach(t, h2, b, n2, AttachOptions{})
	for i, h := range []*Host{h1, h2} {
		got, err := h.Network("ov")
		if err != nil {
			t.Fatal(err)
		}
		if got.Underlay != underlay[i] {
			t.Errorf("host %d: underlay %v, want %v (the src of its route to the peer)", i+1, got.Underlay, underlay[i])
		}
	}
	if _, err := h1.CreateNetwork(ctx, n1); err != nil {
		t.Errorf("the same definition again (underlay left to the default): %v", err)
	}
	mustPing(t, a, epB.Addr(false))
	mustPing(t, b, epA.Addr(false))

	lone := newTestHost(t)
	bad := Network{Name: "ov2", Driver: DriverOverlay, VNI: 7, Subnet: pfx("10.43.0.0/24"), Peers: []netip.Addr{netip.MustParseAddr("198.51.100.9")}}
	_, err := lone.CreateNetwork(ctx, bad)
	if !errors.Is(err, errNoRouteToPeer) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("overlay with no route to its peer: %v, want errNoRouteToPeer and ErrInvalid", err)
	}
	if nets, _ := lone.Networks(); len(nets) != 0 {
		t.Errorf("networks after the failed create: %v", nets)
	}
	nl, _ := lone.NS().Netlink()
	if links, _ := nl.LinkList(); len(links) != 1 {
		t.Errorf("links after the failed create: %d, want only lo", len(links))
	}
	if _, err := lone.CreateNetwork(ctx, Network{Name: "ov3", Driver: DriverOverlay, VNI: 8, Subnet: pfx("10.44.0.0/24")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("overlay with neither underlay nor peers: %v, want ErrInvalid", err)
	}
}

// TestOverlayUnderlayFromFirstPeerGiven: the default underlay is the source
// of the route to the first peer as given, not to the lowest one: a host on
// two segments whose first peer is on the higher one takes its address there.
func TestOverlayUnderlayFromFirstPeerGiven(t *testing.T) {
	ctx := context.Background()
	low, high := testns.NewSegment(t, "lo"), testns.NewSegment(t, "hi")
	h := labHost(t, low, "h", "192.168.60.11/24")
	high.Plug(t, h.NS(), "eth1", pfx("192.168.61.11/24"))
	n := Network{Name: "ov", Driver: DriverOverlay, VNI: 4245, Subnet: pfx("10.45.0.0/24"),
		Peers: []netip.Addr{netip.MustParseAddr("192.168.61.12"), netip.MustParseAddr("192.168.60.12")}}
	got, err := h.CreateNetwork(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("192.168.61.11"); got.Underlay != want {
		t.Errorf("underlay %v, want %v (the src of the route to the first peer given, 192.168.61.12)", got.Underlay, want)
	}
	if want := []netip.Addr{netip.MustParseAddr("192.168.60.12"), netip.MustParseAddr("192.168.61.12")}; !slices.Equal(got.Peers, want) {
		t.Errorf("recorded peers %v, want %v (sorted)", got.Peers, want)
	}
	if err := h.RemoveNetwork(ctx, "ov"); err != nil {
		t.Error(err)
	}
}
