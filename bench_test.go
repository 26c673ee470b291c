package sandnet

import (
	"context"
	"net/netip"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// BenchmarkAttachDetach attaches a sandbox to a bridge network (no published
// port) and detaches it again, per iteration, in a private host namespace.
// The sandbox namespaces are made beforehand and reused in turn. The
// "sandbox-going" case detaches as a runtime does right before it deletes the
// namespace (DetachOptions.SandboxGoing), leaving the veth to the kernel.
func BenchmarkAttachDetach(b *testing.B) {
	b.Run("delete-veth", func(b *testing.B) { benchAttachDetach(b, DetachOptions{}) })
	b.Run("sandbox-going", func(b *testing.B) { benchAttachDetach(b, DetachOptions{SandboxGoing: true}) })
}

func benchAttachDetach(b *testing.B, dopts DetachOptions) {
	h := newTestHost(b)
	ctx := context.Background()
	n := Network{Name: "bench", Subnet: netip.MustParsePrefix("10.77.0.0/16")}
	sbs := make([]*netns.NS, 8)
	for i := range sbs {
		sbs[i] = testns.New(b, "bench")
	}
	if _, err := h.CreateNetwork(ctx, n); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		sb := sbs[i%len(sbs)]
		ep, err := h.AttachNS(ctx, sb, n, AttachOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Detach(ctx, ep, dopts); err != nil {
			b.Fatal(err)
		}
		if dopts.SandboxGoing {
			// The namespace would be deleted now, taking the veth with it;
			// here it is reused, so remove the veth outside the timing.
			b.StopTimer()
			nl, _ := sb.Netlink()
			if l, err := nl.LinkByName(ep.IfName); err == nil {
				nl.LinkDel(l)
			}
			b.StartTimer()
		}
	}
}

// An endpoint detached with SandboxGoing whose namespace lives on after all
// leaves its host veth behind; attaching the same sandbox again replaces it.
func TestDetachSandboxGoingThenReattach(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	sb := testns.New(t, "sbx")
	n := Network{Name: "n1", Subnet: netip.MustParsePrefix("10.88.0.0/24")}
	ep := mustAttach(t, h, sb, n, AttachOptions{})
	if err := h.Detach(ctx, ep, DetachOptions{SandboxGoing: true}); err != nil {
		t.Fatal(err)
	}
	nl, _ := h.NS().Netlink()
	if _, err := nl.LinkByName(ep.HostIfName); err != nil {
		t.Fatalf("host veth %s should be left to the kernel: %v", ep.HostIfName, err)
	}
	if eps, _ := h.Endpoints(""); len(eps) != 0 {
		t.Fatalf("endpoint records left: %v", eps)
	}
	// The namespace was not deleted after all: its eth0 is still there, and
	// a new attach replaces the whole pair.
	sbl, _ := sb.Netlink()
	if _, err := sbl.LinkByName("eth0"); err != nil {
		t.Fatalf("eth0 gone from the sandbox: %v", err)
	}
	ep2 := mustAttach(t, h, sb, n, AttachOptions{})
	if err := testns.Ping(sb, n.Subnet.Addr().Next().String()); err != nil {
		t.Errorf("ping gateway after re-attach: %v", err)
	}
	if err := h.Detach(ctx, ep2); err != nil {
		t.Fatal(err)
	}
	if left := hostResidue(t, h); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
