package diag

import (
	"context"
	"testing"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/testns"
)

func TestCheckNeighborProxy(t *testing.T) {
	l := newLab(t)
	expectAllPass(t, l.check(t, CheckOptions{}))
	// The sandbox forgets its gateway's MAC (ip neigh flush, or its
	// interface went down and up): it would broadcast to find it.
	gw := l.ep.Gateway.String()
	testns.Run(t, l.sb, "ip", "neigh", "del", gw, "dev", l.ep.IfName)
	expectOnly(t, l.check(t, CheckOptions{}), CheckNeighbors, "gateway "+gw, "repair")
	if _, err := l.host.Repair(context.Background(), l.ep); err != nil {
		t.Fatal(err)
	}
	expectAllPass(t, l.check(t, CheckOptions{}))
}

func TestCheckNeighborProxyOff(t *testing.T) {
	hns := testns.New(t, "host")
	h, err := sandnet.NewHostNS(hns, sandnet.HostConfig{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sb := testns.New(t, "sb")
	ep, err := h.AttachNS(context.Background(), sb, sandnet.Network{Name: "flood", Subnet: labSubnet, Internal: true, NoNeighborProxy: true}, sandnet.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Detach(context.Background(), ep)
	rs := Check(context.Background(), sb, CheckOptions{Host: h})
	if r, _ := Find(rs, CheckNeighbors); r.Status != Pass || !contains(r.Reason, "floods address resolution") {
		t.Errorf("%s = %s (%s), want pass: floods", CheckNeighbors, r.Status, r.Reason)
	}
	// One port reaches a backlog of one: the hint says so.
	if _, err := hns.Sysctl("net.core.netdev_max_backlog", "1"); err != nil {
		t.Skipf("netdev_max_backlog is not settable in a namespace here: %v", err)
	}
	rs = Check(context.Background(), sb, CheckOptions{Host: h})
	if r, _ := Find(rs, CheckNeighbors); !contains(r.Reason, "hint: its 1 ports reach net.core.netdev_max_backlog (1)") {
		t.Errorf("%s reason %q, want the backlog hint", CheckNeighbors, r.Reason)
	}
}
