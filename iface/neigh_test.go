package iface_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/veth"
)

func TestPermanentNeighbors(t *testing.T) {
	a, b := testns.New(t, "a"), testns.New(t, "b")
	ctx := context.Background()
	if _, err := veth.Create(ctx, a, veth.Pair{Name: "va", PeerName: "vb", PeerNS: b}); err != nil {
		t.Fatal(err)
	}
	gw, gw6 := netip.MustParseAddr("10.62.0.1"), netip.MustParseAddr("fd00:62::1")
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	for range 2 { // replace: the second round changes nothing
		for _, addr := range []netip.Addr{gw, gw6} {
			if err := iface.SetNeighbor(ctx, b, "vb", addr, mac); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := iface.Neighbors(b, "vb")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []netip.Addr{gw, gw6} {
		if e := got[addr]; !e.Permanent || e.MAC.String() != mac.String() {
			t.Errorf("neighbour %s = %+v, want permanent at %s", addr, e, mac)
		}
	}
	// An entry that points to another MAC now is someone else's: kept.
	if err := iface.DelNeighbor(ctx, b, "vb", gw, other); err != nil {
		t.Fatal(err)
	}
	if got, _ := iface.Neighbors(b, "vb"); !got[gw].Permanent {
		t.Fatalf("DelNeighbor with another MAC removed the entry")
	}
	for range 2 { // idempotent
		for _, addr := range []netip.Addr{gw, gw6} {
			if err := iface.DelNeighbor(ctx, b, "vb", addr, mac); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, _ := iface.Neighbors(b, "vb"); len(got) != 0 {
		t.Errorf("entries left after DelNeighbor: %v", got)
	}
	if err := iface.DelNeighbor(ctx, b, "nope", gw, mac); err != nil {
		t.Errorf("DelNeighbor on a missing link: %v", err)
	}
	if err := iface.SetNeighbor(ctx, b, "vb", gw, nil); !errors.Is(err, iface.ErrInvalid) {
		t.Errorf("SetNeighbor without a MAC: %v, want ErrInvalid", err)
	}
}
