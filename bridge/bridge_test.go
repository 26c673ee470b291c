package bridge_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/veth"
)

func TestEnsureIsIdempotentAndKeepsMAC(t *testing.T) {
	host, sb := testns.New(t, "host"), testns.New(t, "sb")
	ctx := context.Background()
	cfg := bridge.Config{Name: "snt-br0", MTU: 1400, Addrs: []netip.Prefix{
		netip.MustParsePrefix("10.88.0.1/24"), netip.MustParsePrefix("fd00:88::1/64"),
	}}
	br, created, err := bridge.Ensure(ctx, host, cfg)
	if err != nil || !created {
		t.Fatalf("Ensure = %v, created %v", err, created)
	}
	mac := br.HardwareAddr.String()
	if mac != bridge.StableMAC("snt-br0").String() {
		t.Errorf("bridge MAC %s, want the stable %s", mac, bridge.StableMAC("snt-br0"))
	}
	if _, created, err = bridge.Ensure(ctx, host, cfg); err != nil || created {
		t.Fatalf("second Ensure = %v, created %v; want adopted", err, created)
	}
	nl, _ := host.Netlink()
	addrs, _ := nl.AddrList(br, netlink.FAMILY_ALL)
	got := map[string]bool{}
	for _, a := range addrs {
		got[a.IPNet.String()] = true
	}
	if !got["10.88.0.1/24"] || !got["fd00:88::1/64"] || len(addrs) < 2 {
		t.Errorf("bridge addresses %v", got)
	}
	l, _ := nl.LinkByName("snt-br0")
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("bridge not up: %v", l.Attrs().Flags)
	}

	// Ports come and go; the MAC stays.
	for _, name := range []string{"snt-p1", "snt-p2"} {
		if _, err := veth.Create(ctx, host, veth.Pair{Name: name, PeerName: "x" + name[4:], PeerNS: sb}); err != nil {
			t.Fatal(err)
		}
		if err := bridge.AddPort(ctx, host, "snt-br0", name); err != nil {
			t.Fatal(err)
		}
	}
	ports, err := bridge.Ports(host, "snt-br0")
	if err != nil || len(ports) != 2 {
		t.Fatalf("Ports = %v, %v", ports, err)
	}
	if err := bridge.RemovePort(ctx, host, "snt-p1"); err != nil {
		t.Fatal(err)
	}
	if err := bridge.RemovePort(ctx, host, "snt-p1"); err != nil {
		t.Fatalf("second RemovePort = %v", err)
	}
	veth.Delete(ctx, host, "snt-p2")
	l, _ = nl.LinkByName("snt-br0")
	if l.Attrs().HardwareAddr.String() != mac {
		t.Errorf("bridge MAC moved from %s to %s", mac, l.Attrs().HardwareAddr)
	}

	if err := bridge.Delete(ctx, host, "snt-br0"); err != nil {
		t.Fatal(err)
	}
	if err := bridge.Delete(ctx, host, "snt-br0"); err != nil {
		t.Fatalf("second Delete = %v", err)
	}
}

func TestEnsureRefusesNonBridge(t *testing.T) {
	host, sb := testns.New(t, "host"), testns.New(t, "sb")
	ctx := context.Background()
	if _, err := veth.Create(ctx, host, veth.Pair{Name: "snt-v", PeerNS: sb}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bridge.Ensure(ctx, host, bridge.Config{Name: "snt-v"}); !errors.Is(err, bridge.ErrExists) {
		t.Fatalf("Ensure over a veth = %v, want ErrExists", err)
	}
	if _, _, err := bridge.Ensure(ctx, host, bridge.Config{Name: "snt-name-too-long-for-linux"}); !errors.Is(err, bridge.ErrInvalid) {
		t.Fatalf("Ensure with a long name = %v, want ErrInvalid", err)
	}
}

// TestEnsureNoMulticastSnooping: a bridge made with NoMulticastSnooping
// snoops nothing; one made without it keeps the kernel's default (on), and
// adopting a bridge leaves its setting alone.
func TestEnsureNoMulticastSnooping(t *testing.T) {
	host := testns.New(t, "host")
	ctx := context.Background()
	nl, _ := host.Netlink()
	snooping := func(name string) bool {
		t.Helper()
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		br, ok := l.(*netlink.Bridge)
		if !ok || br.MulticastSnooping == nil {
			t.Fatalf("%s: no bridge attributes (%T)", name, l)
		}
		return *br.MulticastSnooping
	}
	if _, _, err := bridge.Ensure(ctx, host, bridge.Config{Name: "snt-quiet", NoMulticastSnooping: true}); err != nil {
		t.Fatal(err)
	}
	if snooping("snt-quiet") {
		t.Error("bridge made with NoMulticastSnooping snoops")
	}
	if _, _, err := bridge.Ensure(ctx, host, bridge.Config{Name: "snt-snoop"}); err != nil {
		t.Fatal(err)
	}
	if !snooping("snt-snoop") {
		t.Error("bridge made without NoMulticastSnooping does not snoop")
	}
	if _, created, err := bridge.Ensure(ctx, host, bridge.Config{Name: "snt-snoop", NoMulticastSnooping: true}); err != nil || created {
		t.Fatalf("adopting: %v, created %v", err, created)
	}
	if !snooping("snt-snoop") {
		t.Error("adopting a bridge turned its snooping off")
	}
}
