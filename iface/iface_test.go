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

// TestBornWithoutIPv6Begun: an interface made through a Birth begun ahead
// has IPv6 off from birth (no link-local address) and the namespace's
// default is put back; a Birth cancelled makes nothing and changes
// nothing.
func TestBornWithoutIPv6Begun(t *testing.T) {
	host, sb := testns.New(t, "host"), testns.New(t, "sb")
	ctx := context.Background()
	if v, err := sb.ReadSysctl("net.ipv6.conf.default.disable_ipv6"); err != nil || v != "0" {
		t.Skipf("IPv6 default in a new namespace is %q (%v)", v, err)
	}
	iface.BeginBornWithoutIPv6(sb, "eth0").Cancel()
	b := iface.BeginBornWithoutIPv6(sb, "eth0")
	off, err := b.Create(func() error {
		_, err := veth.Create(ctx, host, veth.Pair{Name: "vborn", PeerName: "eth0", PeerNS: sb})
		return err
	})
	b.Cancel() // after Create: nothing
	if err != nil || !off {
		t.Fatalf("Create = %v, %v; want IPv6 off", off, err)
	}
	if v, _ := sb.ReadSysctl("net/ipv6/conf/eth0/disable_ipv6"); v != "1" {
		t.Errorf("eth0 disable_ipv6 = %q, want 1", v)
	}
	if v, _ := sb.ReadSysctl("net.ipv6.conf.default.disable_ipv6"); v != "0" {
		t.Errorf("default disable_ipv6 = %q after the birth, want 0 back", v)
	}
	if err := iface.Up(ctx, sb, "eth0"); err != nil {
		t.Fatal(err)
	}
	if out := testns.Run(t, sb, "ip", "-6", "addr", "show", "dev", "eth0"); strings.Contains(out, "inet6") {
		t.Errorf("eth0 has IPv6 addresses: %s", out)
	}
	if out := testns.Run(t, sb, "ip", "-o", "link"); strings.Count(out, "eth0") != 1 {
		t.Errorf("links in the sandbox: %s", out)
	}
}
