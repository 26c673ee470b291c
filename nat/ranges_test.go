package nat_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
)

// TestLargePortRange: publishing every port (a 65535-port range, as
// ParsePort expands "1-65535:1-65535") works on both backends: the
// nftables backend splits the elements into messages and transactions that
// netlink takes; Check finds them all and RemoveEndpoint leaves nothing.
// A 1000-port range failed with a "missing" map before (a 16-bit netlink
// attribute length wrapped), 2400 with "message too long"; the iptables
// backend's Check ran one iptables -C per port.
func TestLargePortRange(t *testing.T) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			needBackend(t, bk.name)
			// The iptables backend removes rules one by one (iptables-restore
			// -D, quadratic): the whole range takes it about a minute on two
			// busy cores, so by default it gets 4096 ports.
			spec := "1-65535:1-65535/udp"
			if bk.name == "iptables" && os.Getenv("SANDNET_TEST_FULL_RANGE") == "" {
				spec = "60000-64095:1-4096/udp"
			}
			ports, err := nat.ParsePort(spec)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			host := testns.New(t, "host")
			fw := bk.new(host)
			if c, ok := fw.(interface{ Close() error }); ok {
				t.Cleanup(func() { c.Close() })
			}
			n := nat.Network{Name: "big", Bridge: "sn-big", Subnet: netip.MustParsePrefix("10.91.5.0/24")}
			ep := nat.Endpoint{ID: "e1", Sandbox: "s1", Addr: netip.MustParseAddr("10.91.5.2"), Ports: ports}
			if err := fw.EnsureNetwork(ctx, n); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := fw.AddEndpoint(ctx, n, ep); err != nil {
				t.Fatalf("publishing %d ports: %v", len(ports), err)
			}
			added := time.Since(start)
			if got := strings.Count(residue(t, host), "ep=e1 "); got != len(ports) {
				t.Errorf("%d rules or elements of the endpoint, want %d", got, len(ports))
			}
			start = time.Now()
			if m, err := fw.Check(ctx, n, []nat.Endpoint{ep}); err != nil || len(m) > 0 {
				t.Errorf("Check: %d missing, %v", len(m), err)
			}
			checked := time.Since(start)
			start = time.Now()
			if err := fw.RemoveEndpoint(ctx, n, ep); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d ports: add %v, check %v, remove %v", len(ports), added, checked, time.Since(start))
			if s := residue(t, host); strings.Contains(s, "ep=e1") {
				t.Errorf("elements left: %d", strings.Count(s, "ep=e1"))
			}
			if err := fw.RemoveNetwork(ctx, n); err != nil {
				t.Fatal(err)
			}
		})
	}
}
