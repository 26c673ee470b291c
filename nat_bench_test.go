package sandnet

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
)

// BenchmarkAttachDetachPort measures Attach+Detach of one sandbox with one
// published port on a bridge network that already has N endpoints, each
// with a published port of its own (so the nat table holds N DNAT rules).
//
// endpoints=10/no-port is the same without the published port: the
// difference is the cost of publishing (rules, conntrack, port table).
func BenchmarkAttachDetachPort(b *testing.B) {
	for _, c := range []struct {
		n      int
		noPort bool
	}{{10, true}, {10, false}, {100, false}, {500, false}} {
		n := c.n
		name := fmt.Sprintf("endpoints=%d", n)
		if c.noPort {
			name += "/no-port"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			hns := testns.New(b, "host")
			h, err := NewHostNS(hns, HostConfig{StateDir: filepath.Join(b.TempDir(), "state")})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			net := Network{Name: "bench", Subnet: netip.MustParsePrefix("10.92.0.0/22")}
			var eps []*Endpoint
			for i := 0; i < n; i++ {
				sb := testns.New(b, "b")
				ep, err := h.AttachNS(ctx, sb, net, AttachOptions{Ports: []PortMapping{{HostPort: uint16(20000 + i), ContainerPort: 80, Proto: "tcp"}}})
				if err != nil {
					b.Fatal(err)
				}
				eps = append(eps, ep)
			}
			b.Cleanup(func() {
				for _, ep := range eps {
					h.Detach(ctx, ep)
				}
				h.RemoveNetwork(ctx, "bench")
			})
			sb := testns.New(b, "x")
			ports := []PortMapping{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}
			if c.noPort {
				ports = nil
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ep, err := h.AttachNS(ctx, sb, net, AttachOptions{Ports: ports})
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Detach(ctx, ep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
