package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// crashAt makes Attach stop dead at step, as if the process were killed:
// nothing is undone (the panic skips the undo stack), only file locks are
// released, as the kernel does for a dead process. The steps it had running
// beside the one that crashed finish first (AttachNS waits for them even
// as it panics): a process killed a moment later.
func crashAt(t *testing.T, h *Host, sb *netns.NS, n Network, step Step) {
	t.Helper()
	crashAtOpts(t, h, sb, n, step, AttachOptions{})
}

func TestGCAfterCrashAtEachStep(t *testing.T) {
	h := newTestHost(t)
	n := Network{Name: "crashy", Subnet: netip.MustParsePrefix("10.98.0.0/29")} // 5 usable addresses
	for _, step := range []Step{StepAddress, StepLink, StepConfigure, StepDNS, StepPorts, StepRecord} {
		sb := testns.New(t, "crash")
		crashAt(t, h, sb, n, step)
		rep, err := h.GC(context.Background())
		if err != nil {
			t.Fatalf("GC after crash at %s: %v", step, err)
		}
		if len(rep.Endpoints) != 1 {
			t.Errorf("GC after crash at %s removed %v, want the one endpoint", step, rep)
		}
		if left := hostResidue(t, h); len(left) > 0 {
			t.Errorf("after crash at %s and GC: %v", step, left)
		}
		if out := testns.Run(t, sb, "ip", "-o", "link"); strings.Contains(out, "eth0") {
			t.Errorf("after crash at %s and GC, eth0 is still in the sandbox", step)
		}
	}
	// The pool is whole again: all five addresses can be handed out.
	for i := range 5 {
		mustAttach(t, h, testns.New(t, fmt.Sprint("after", i)), n, AttachOptions{})
	}
}

func TestGCReclaimsVanishedNamespacesAndImplicitNetworks(t *testing.T) {
	h := newTestHost(t)
	var eps []*Endpoint
	for i := range 3 {
		sb := testns.New(t, fmt.Sprint("v", i))
		eps = append(eps, mustAttach(t, h, sb, dual, AttachOptions{}))
	}
	// A "reboot": namespaces (and so their veths) vanish behind sandnet's back.
	for _, ep := range eps[:2] {
		if err := netns.Delete(context.Background(), ep.SandboxID); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := h.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Endpoints) != 2 || len(rep.Networks) != 0 {
		t.Fatalf("GC = %+v, want the 2 endpoints and no network", rep)
	}
	left, _ := h.Endpoints("n1")
	if len(left) != 1 || left[0].ID != eps[2].ID {
		t.Fatalf("live endpoints after GC: %v", left)
	}
	// New attaches never get an address still held by the live one.
	for i := range 3 {
		ep := mustAttach(t, h, testns.New(t, fmt.Sprint("w", i)), dual, AttachOptions{})
		if ep.Addr(false) == eps[2].Addr(false) {
			t.Fatalf("address %s handed out twice", ep.Addr(false))
		}
	}
	// Once every namespace is gone, the implicit network goes too.
	all, _ := h.Endpoints("n1")
	for _, ep := range all {
		netns.Delete(context.Background(), ep.SandboxID)
	}
	rep, err = h.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Networks) != 1 {
		t.Fatalf("GC = %+v, want network n1 removed", rep)
	}
	nets, _ := h.Networks()
	if len(nets) != 0 {
		t.Fatalf("networks after GC: %v", nets)
	}
	nl, _ := h.ns.Netlink()
	if _, err := nl.LinkByName(dual.withDefaultsMust(t).Bridge); err == nil {
		t.Error("bridge survived its network")
	}
}

func TestGCKeepsExplicitNetworksAndLiveEndpoints(t *testing.T) {
	h := newTestHost(t)
	if _, err := h.CreateNetwork(context.Background(), dual); err != nil {
		t.Fatal(err)
	}
	ep := mustAttach(t, h, testns.New(t, "live"), dual, AttachOptions{})
	rep, err := h.GC(context.Background())
	if err != nil || len(rep.Endpoints)+len(rep.Networks)+len(rep.Leases) != 0 {
		t.Fatalf("GC on a healthy host = %+v, %v; want nothing", rep, err)
	}
	h.Detach(context.Background(), ep)
	if rep, _ := h.GC(context.Background()); len(rep.Networks) != 0 {
		t.Fatalf("GC removed an explicit network: %+v", rep)
	}
}

// TestGCRemovesHalfWrittenRecords: a record that a writer died writing
// (the port step writes its record beside the link step, so a crash can
// catch it half-way) is removed by GC; the records beside it stay.
func TestGCRemovesHalfWrittenRecords(t *testing.T) {
	h := newTestHost(t)
	n := Network{Name: "halfway", Subnet: netip.MustParsePrefix("10.98.1.0/29")}
	ep := mustAttach(t, h, testns.New(t, "half"), n, AttachOptions{})
	tmp := filepath.Join(h.st.EndpointDir(n.Name), ".tmp-deadwriter")
	if err := os.WriteFile(tmp, []byte("{\n  \"version\""), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("GC left the half-written record: %v", err)
	}
	if _, err := h.st.ReadEndpoint(n.Name, ep.ID); err != nil {
		t.Errorf("GC touched the live endpoint's record: %v", err)
	}
}
