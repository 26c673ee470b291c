package veth_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/veth"
)

func TestCreateAcrossNamespaces(t *testing.T) {
	host, sb := testns.New(t, "host"), testns.New(t, "sb")
	mac, _ := net.ParseMAC("02:42:0a:00:00:02")
	var said []string
	ctx := explain.With(context.Background(), func(cmd string) { said = append(said, cmd) })
	if _, err := veth.Create(ctx, host, veth.Pair{Name: "snt-v0", PeerNS: sb, MTU: 1400, PeerMAC: mac}); err != nil {
		t.Fatal(err)
	}
	hnl, _ := host.Netlink()
	hl, err := hnl.LinkByName("snt-v0")
	if err != nil {
		t.Fatal(err)
	}
	snl, _ := sb.Netlink()
	pl, err := snl.LinkByName("eth0")
	if err != nil {
		t.Fatalf("peer eth0 not in the sandbox: %v", err)
	}
	// One queue each way on both ends, given in the request (the default
	// is one per CPU).
	for _, l := range []netlink.Link{hl, pl} {
		if a := l.Attrs(); a.NumTxQueues != 1 || a.NumRxQueues != 1 {
			t.Errorf("%s: %d transmit and %d receive queues, want 1 and 1", a.Name, a.NumTxQueues, a.NumRxQueues)
		}
	}
	if hl.Attrs().MTU != 1400 || pl.Attrs().MTU != 1400 {
		t.Errorf("MTU host %d peer %d, want 1400", hl.Attrs().MTU, pl.Attrs().MTU)
	}
	if pl.Attrs().HardwareAddr.String() != mac.String() {
		t.Errorf("peer MAC %s, want %s", pl.Attrs().HardwareAddr, mac)
	}
	// The peer index the kernel reports on each side points at the other.
	if hl.Attrs().ParentIndex != pl.Attrs().Index || pl.Attrs().ParentIndex != hl.Attrs().Index {
		t.Errorf("peer indexes: host %d->%d, sandbox %d->%d", hl.Attrs().Index, hl.Attrs().ParentIndex, pl.Attrs().Index, pl.Attrs().ParentIndex)
	}
	if _, err := hnl.LinkByName("eth0"); err == nil {
		t.Error("eth0 appeared in the host namespace")
	}
	if len(said) != 1 || !strings.Contains(said[0], "type veth peer name eth0") || !strings.Contains(said[0], "netns "+sb.Name()) {
		t.Errorf("explanation = %q", said)
	}

	if _, err := veth.Create(ctx, host, veth.Pair{Name: "snt-v0", PeerName: "eth1", PeerNS: sb}); !errors.Is(err, veth.ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	if err := veth.Delete(ctx, host, "snt-v0"); err != nil {
		t.Fatal(err)
	}
	if _, err := snl.LinkByName("eth0"); err == nil {
		t.Error("deleting the host end left the peer")
	}
	if err := veth.Delete(ctx, host, "snt-v0"); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
}

func TestCreateRejectsBadNames(t *testing.T) {
	host, sb := testns.New(t, "host"), testns.New(t, "sb")
	for _, p := range []veth.Pair{
		{Name: "snt-this-name-is-too-long", PeerNS: sb},
		{Name: "", PeerNS: sb},
		{Name: "a b", PeerNS: sb},
		{Name: "ok", PeerName: "bad/name", PeerNS: sb},
		{Name: "ok"},
	} {
		if _, err := veth.Create(context.Background(), host, p); !errors.Is(err, veth.ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", p, err)
		}
	}
	nl, _ := host.Netlink()
	links, _ := nl.LinkList()
	for _, l := range links {
		if _, ok := l.(*netlink.Veth); ok {
			t.Errorf("bad input left %s behind", l.Attrs().Name)
		}
	}
}

// TestCreateReplace: with Replace, a veth left under the host end's name
// goes (its peer with it) and the new pair is made; a link of another
// kind under that name is still ErrExists and stays.
func TestCreateReplace(t *testing.T) {
	host, sb := testns.New(t, "host"), testns.New(t, "sb")
	ctx := context.Background()
	old, err := veth.Create(ctx, host, veth.Pair{Name: "snt-v0", PeerNS: sb})
	if err != nil {
		t.Fatal(err)
	}
	link, err := veth.Create(ctx, host, veth.Pair{Name: "snt-v0", PeerName: "eth1", PeerNS: sb, Replace: true})
	if err != nil {
		t.Fatalf("Create with Replace over a veth = %v", err)
	}
	if link.Attrs().Index == old.Attrs().Index {
		t.Error("the old host end was kept")
	}
	snl, _ := sb.Netlink()
	if _, err := snl.LinkByName("eth0"); err == nil {
		t.Error("the old peer eth0 is still in the sandbox")
	}
	if _, err := snl.LinkByName("eth1"); err != nil {
		t.Errorf("the new peer eth1: %v", err)
	}

	hnl, _ := host.Netlink()
	if err := hnl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "snt-b1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := veth.Create(ctx, host, veth.Pair{Name: "snt-b1", PeerName: "eth2", PeerNS: sb, Replace: true}); !errors.Is(err, veth.ErrExists) {
		t.Errorf("Create with Replace over a bridge = %v, want ErrExists", err)
	}
	if l, err := hnl.LinkByName("snt-b1"); err != nil || l.Type() != "bridge" {
		t.Errorf("the bridge snt-b1: %v, %v", l, err)
	}
}

// Unregister returns with the pair gone from both namespaces, its address
// with it and its names free, while the kernel may still be freeing it; two
// deletions at once each wait for their own link, not for the other's
// announcement.
func TestUnregister(t *testing.T) {
	host, sb := testns.New(t, "host"), testns.New(t, "sb")
	ctx := context.Background()
	hnl, _ := host.Netlink()
	snl, _ := sb.Netlink()
	for i := 0; i < 5; i++ {
		names := []string{"snt-v1", "snt-v2", "snt-v3"}
		for j, name := range names {
			l, err := veth.Create(ctx, host, veth.Pair{Name: name, PeerName: "eth" + string(rune('0'+j)), PeerNS: sb, Up: true})
			if err != nil {
				t.Fatal(err)
			}
			addr, _ := netlink.ParseAddr("10.99." + string(rune('1'+j)) + ".1/24")
			if err := hnl.AddrAdd(l, addr); err != nil {
				t.Fatal(err)
			}
		}
		var (
			wg    sync.WaitGroup
			dones = make([]<-chan struct{}, len(names))
		)
		for j, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				done, err := veth.Unregister(ctx, host, name)
				if err != nil {
					t.Errorf("Unregister(%s) = %v", name, err)
					return
				}
				dones[j] = done
				// Checked before done: what a caller sees on return.
				if _, err := hnl.LinkByName(name); err == nil {
					t.Errorf("round %d: %s is still in the host on return", i, name)
				}
				if _, err := snl.LinkByName("eth" + string(rune('0'+j))); err == nil {
					t.Errorf("round %d: the peer of %s is still in the sandbox on return", i, name)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		addrs, err := hnl.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if strings.HasPrefix(a.IPNet.String(), "10.99.") {
				t.Errorf("round %d: address %s left", i, a.IPNet)
			}
		}
		for _, d := range dones {
			<-d
		}
	}

	// Gone already: nil, and nothing to wait for.
	done, err := veth.Unregister(ctx, host, "snt-v1")
	if err != nil {
		t.Fatalf("Unregister of a missing link = %v", err)
	}
	<-done
	// The kernel's refusal comes back.
	if _, err := veth.Unregister(ctx, host, "lo"); err == nil {
		t.Error("Unregister(lo) = nil, want the kernel's error")
	}
}
