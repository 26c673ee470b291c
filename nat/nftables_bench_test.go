package nat

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
)

// BenchmarkNFTablesElements measures the netlink part of AddEndpoint +
// RemoveEndpoint (one transaction each, no conntrack flush) of one
// endpoint with one published port, next to N others: it stays flat.
func BenchmarkNFTablesElements(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			ctx := context.Background()
			host := testns.New(b, "host")
			fw := NewNFTables(host)
			defer fw.Close()
			net := Network{Name: "b", Bridge: "sn-b", Subnet: netip.MustParsePrefix("10.104.0.0/16")}
			if err := fw.EnsureNetwork(ctx, net); err != nil {
				b.Fatal(err)
			}
			ep := func(i int) Endpoint {
				return Endpoint{ID: fmt.Sprint(i), Addr: netip.AddrFrom4([4]byte{10, 104, byte((i + 2) >> 8), byte(i + 2)}),
					Ports: []PortMapping{{HostPort: uint16(20000 + i), ContainerPort: 80, Proto: "tcp"}}}
			}
			for i := 0; i < n; i++ {
				if err := fw.addElems(ctx, nftEndpointElems(net, ep(i))); err != nil {
					b.Fatal(err)
				}
			}
			e := ep(5000)
			es := nftEndpointElems(net, e)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := fw.addElems(ctx, es); err != nil {
					b.Fatal(err)
				}
				if err := fw.removeElems(ctx, net, e, es); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			fw.RemoveNetwork(ctx, net)
		})
	}
}
