package overlay_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/overlay"
)

// twoHosts makes two namespaces joined by a veth "cable" with underlay
// addresses 192.168.70.1 and .2, each with a VXLAN device (VNI 7) carrying
// an overlay address 10.70.0.1 or .2.
func twoHosts(t *testing.T) (h1, h2 *netns.NS) {
	t.Helper()
	seg := testns.NewSegment(t, "sw")
	h1 = seg.Machine(t, "h1", netip.MustParsePrefix("192.168.70.1/24"))
	h2 = seg.Machine(t, "h2", netip.MustParsePrefix("192.168.70.2/24"))
	for i, h := range []*netns.NS{h1, h2} {
		_, created, err := overlay.Ensure(context.Background(), h, overlay.Device{
			Name: "vx7", VNI: 7, Local: netip.AddrFrom4([4]byte{192, 168, 70, byte(i + 1)}), Learning: true,
		})
		if err != nil || !created {
			t.Fatalf("Ensure: created %v, %v", created, err)
		}
		testns.Run(t, h, "ip", "addr", "add", netip.AddrFrom4([4]byte{10, 70, 0, byte(i + 1)}).String()+"/24", "dev", "vx7")
	}
	return h1, h2
}

func TestEnsurePeersAndTraffic(t *testing.T) {
	ctx := context.Background()
	h1, h2 := twoHosts(t)
	nl, _ := h1.Netlink()
	l, err := nl.LinkByName("vx7")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1450 {
		t.Fatalf("mtu = %d, want 1450 (1500 - %d)", l.Attrs().MTU, overlay.Overhead)
	}
	// Ensure again adopts it; a different VNI under that name is a conflict.
	if _, created, err := overlay.Ensure(ctx, h1, overlay.Device{Name: "vx7", VNI: 7, Local: netip.MustParseAddr("192.168.70.1")}); err != nil || created {
		t.Fatalf("second Ensure: created %v, %v", created, err)
	}
	if _, _, err := overlay.Ensure(ctx, h1, overlay.Device{Name: "vx7", VNI: 8, Local: netip.MustParseAddr("192.168.70.1")}); !errors.Is(err, overlay.ErrExists) {
		t.Fatalf("other VNI: err = %v, want ErrExists", err)
	}
	if _, _, err := overlay.Ensure(ctx, h1, overlay.Device{Name: "vx8", VNI: 8, Local: netip.MustParseAddr("192.168.70.9")}); !errors.Is(err, overlay.ErrNotFound) {
		t.Fatalf("foreign local address: err = %v, want ErrNotFound", err)
	}

	// No peers: nothing crosses.
	if err := testns.Ping(h1, "10.70.0.2"); err == nil {
		t.Fatal("ping crosses an overlay without peers")
	}
	p1, p2 := netip.MustParseAddr("192.168.70.1"), netip.MustParseAddr("192.168.70.2")
	for range 2 { // twice: idempotent
		if err := overlay.AddPeer(ctx, h1, "vx7", p2); err != nil {
			t.Fatal(err)
		}
		if err := overlay.AddPeer(ctx, h2, "vx7", p1); err != nil {
			t.Fatal(err)
		}
	}
	if peers, err := overlay.Peers(h1, "vx7"); err != nil || !slices.Equal(peers, []netip.Addr{p2}) {
		t.Fatalf("Peers = %v, %v; want [%s]", peers, err, p2)
	}
	var ok bool
	for range 3 {
		if ok = testns.Ping(h1, "10.70.0.2") == nil; ok {
			break
		}
	}
	if !ok {
		t.Fatal("no ping across the overlay after adding peers")
	}
	// Learning put h2's MAC in h1's FDB, pointing at h2.
	mac2 := linkMAC(t, h2, "vx7")
	entries, err := overlay.FDB(h1, "vx7")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(entries, func(e overlay.Entry) bool { return e.MAC.String() == mac2.String() && e.Dst == p2 }) {
		t.Fatalf("FDB %v has no entry for %s -> %s", entries, mac2, p2)
	}

	// A static MAC entry, then removing the peer takes it and the learnt one away.
	static := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}
	if err := overlay.AddMAC(ctx, h1, "vx7", static, p2); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := overlay.RemovePeer(ctx, h1, "vx7", p2); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ = overlay.FDB(h1, "vx7")
	if len(entries) != 0 {
		t.Fatalf("FDB after RemovePeer = %v, want empty", entries)
	}
	// A peer is cut off only when both sides drop each other (see RemovePeer):
	// anything h2 still sends to h1 would be learnt again.
	if err := overlay.RemovePeer(ctx, h2, "vx7", p1); err != nil {
		t.Fatal(err)
	}
	if err := overlay.RemovePeer(ctx, h1, "vx7", p2); err != nil { // and whatever h1 learnt meanwhile
		t.Fatal(err)
	}
	if err := testns.Ping(h1, "10.70.0.2"); err == nil {
		t.Fatal("ping still crosses after the peer was removed")
	}
	for range 2 {
		if err := overlay.Delete(ctx, h1, "vx7"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := overlay.FDB(h1, "vx7"); !errors.Is(err, overlay.ErrNotFound) {
		t.Fatalf("FDB of a deleted device: err = %v, want ErrNotFound", err)
	}
}

func linkMAC(t *testing.T, ns *netns.NS, name string) net.HardwareAddr {
	t.Helper()
	nl, _ := ns.Netlink()
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

func TestMTU(t *testing.T) {
	if overlay.MTU(1500, false) != 1450 || overlay.MTU(9000, true) != 8930 {
		t.Fatal("MTU arithmetic")
	}
}
