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
		if err := h.DetachWith(ctx, ep, dopts); err != nil {
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
