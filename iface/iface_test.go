package iface_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/veth"
)

func TestAddressesRoutesAndTraffic(t *testing.T) {
	a, b := testns.New(t, "a"), testns.New(t, "b")
	var said []string
	ctx := explain.With(context.Background(), func(cmd string) { said = append(said, cmd) })
	if _, err := veth.Create(ctx, a, veth.Pair{Name: "va", PeerName: "vb", PeerNS: b}); err != nil {
		t.Fatal(err)
	}
	pa, pb := netip.MustParsePrefix("10.61.0.1/24"), netip.MustParsePrefix("10.61.0.2/24")
	for range 2 { // the second round proves the adds are idempotent
		for _, step := range []error{
			iface.AddAddr(ctx, a, "va", pa), iface.Up(ctx, a, "va"),
			iface.AddAddr(ctx, b, "vb", pb), iface.Up(ctx, b, "vb"),
			iface.AddRoute(ctx, b, iface.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: pa.Addr(), Dev: "vb"}),
		} {
			if step != nil {
				t.Fatal(step)
			}
		}
	}
	// A different route to the same destination is a conflict.
	err := iface.AddRoute(ctx, b, iface.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("10.61.0.9")})
	if !errors.Is(err, iface.ErrExists) {
		t.Fatalf("conflicting default route: %v, want ErrExists", err)
	}
	// The default route carries b's traffic to an address beyond its subnet.
	if err := iface.AddAddr(ctx, a, "lo", netip.MustParsePrefix("192.0.2.7/32")); err != nil {
		t.Fatal(err)
	}
	if err := iface.Up(ctx, a, "lo"); err != nil {
		t.Fatal(err)
	}
	if out := testns.Run(t, b, "ping", "-c", "1", "-W", "2", "192.0.2.7"); !strings.Contains(out, "1 received") {
		t.Fatalf("ping over the default route:\n%s", out)
	}
	got := testns.Run(t, b, "ip", "route", "show", "default")
	if !strings.Contains(got, "default via 10.61.0.1 dev vb") {
		t.Fatalf("ip route show default in b: %q", got)
	}
	want := "ip -n " + b.Name() + " route add default via 10.61.0.1 dev vb"
	if !strings.Contains(strings.Join(said, "\n"), want) {
		t.Fatalf("explain said %q, want it to contain %q", said, want)
	}

	// Dels are idempotent and leave b with no way out.
	for range 2 {
		if err := iface.DelRoute(ctx, b, iface.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: pa.Addr(), Dev: "vb"}); err != nil {
			t.Fatal(err)
		}
		if err := iface.DelAddr(ctx, a, "va", pa); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := testns.Try(b, "ip", "route", "get", "192.0.2.7"); err == nil {
		t.Fatalf("route get after deleting the default route succeeded:\n%s", out)
	}
	if err := iface.DelAddr(ctx, a, "gone0", pa); err != nil {
		t.Fatalf("DelAddr on a missing link: %v", err)
	}
	if err := iface.Up(ctx, a, "gone0"); !errors.Is(err, iface.ErrNotFound) {
		t.Fatalf("Up on a missing link: %v, want ErrNotFound", err)
	}
	if err := iface.AddRoute(ctx, a, iface.Route{Dst: netip.MustParsePrefix("10.0.0.0/8")}); !errors.Is(err, iface.ErrInvalid) {
		t.Fatalf("route without gateway or device: %v, want ErrInvalid", err)
	}
}
