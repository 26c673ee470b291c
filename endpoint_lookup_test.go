package sandnet

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
)

// TestLookupAndGCNetworkKeepSet: an endpoint is found by (network,
// sandbox, interface) from a second Host over the same state dir, as the
// CNI plugin's next process does; GCNetwork tears down exactly what the keep
// set rejects, on its network only, and then frees the leases.
func TestLookupAndGCNetworkKeepSet(t *testing.T) {
	h := newTestHost(t)
	n := Network{Name: "keep", Subnet: netip.MustParsePrefix("10.97.0.0/24")}
	other := Network{Name: "other", Subnet: netip.MustParsePrefix("10.97.1.0/24")}
	for _, id := range []string{"a", "b", "c"} {
		mustAttach(t, h, testns.New(t, "keep"), n, AttachOptions{SandboxID: id})
	}
	mustAttach(t, h, testns.New(t, "keep"), other, AttachOptions{SandboxID: "z"})

	h2 := openTestHost(t, h.NS(), HostConfig{StateDir: h.StateDir()})
	ep, err := h2.LookupEndpoint("keep", "b", "")
	if err != nil || ep.SandboxID != "b" || ep.IfName != "eth0" || !ep.Addr(false).IsValid() {
		t.Fatalf("LookupEndpoint(keep, b): %+v, %v", ep, err)
	}
	if _, err := h2.LookupEndpoint("keep", "nope", "eth0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupEndpoint of a sandbox never attached: %v, want ErrNotFound", err)
	}
	if _, err := h2.GCNetwork(context.Background(), "keep", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("GCNetwork without a keep set: %v, want ErrInvalid", err)
	}

	rep, err := h2.GCNetwork(context.Background(), "keep", func(ep *Endpoint) bool { return ep.SandboxID == "a" })
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Endpoints) != 2 {
		t.Errorf("GCNetwork removed %v, want b and c", rep.Endpoints)
	}
	eps, _ := h.Endpoints("")
	var left []string
	for _, e := range eps {
		left = append(left, e.Network+"/"+e.SandboxID)
	}
	if len(left) != 2 || left[0] != "keep/a" || left[1] != "other/z" {
		t.Errorf("endpoints after GCNetwork: %v, want keep/a and other/z", left)
	}
	if leases, _ := h.ipam.List("keep"); len(leases) != 1 {
		t.Errorf("%d leases on keep, want a's only", len(leases))
	}
	if err := h2.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// TestClusterCIDRChecked: ClusterCIDR is validated with the network.
func TestClusterCIDRChecked(t *testing.T) {
	cl := netip.MustParsePrefix("10.244.0.0/16")
	sub := netip.MustParsePrefix("10.244.1.0/24")
	for _, n := range []Network{
		{Name: "c1", Subnet: sub, ClusterCIDR: netip.MustParsePrefix("10.244.0.1/16")},
		{Name: "c2", Subnet: sub, ClusterCIDR: netip.MustParsePrefix("fd00::/48")},
		{Name: "c3", Subnet: sub, ClusterCIDR: cl, Internal: true},
		{Name: "c4", Driver: DriverOverlay, VNI: 1, Underlay: netip.MustParseAddr("192.168.0.1"), Subnet: sub, ClusterCIDR: cl},
	} {
		if _, err := n.withDefaults(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "clusterCIDR") {
			t.Errorf("%s: %v, want ErrInvalid about clusterCIDR", n.Name, err)
		}
	}
	if _, err := (Network{Name: "ok", Subnet: sub, Routed: true, ClusterCIDR: cl}).withDefaults(); err != nil {
		t.Errorf("a routed network with a cluster CIDR: %v", err)
	}
}
