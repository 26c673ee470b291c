package nat_test

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

// backends are the Backends these tests run against.
var backends = []struct {
	name string
	new  func(*netns.NS) nat.Backend
}{
	{"iptables", func(ns *netns.NS) nat.Backend { return nat.NewIPTables(ns) }},
}

func save(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		for _, l := range strings.Split(testns.Run(t, ns, cmd), "\n") {
			if strings.Contains(strings.ToLower(l), "sandnet") {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

func TestBackendLifecycle(t *testing.T) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			ctx := context.Background()
			host := testns.New(t, "host")
			fw := bk.new(host)
			var (
				mu   sync.Mutex
				said []string
			)
			ectx := explain.With(ctx, func(cmd string) { mu.Lock(); said = append(said, cmd); mu.Unlock() })
			n1 := nat.Network{Name: "n1", Bridge: "sn-n1", Subnet: netip.MustParsePrefix("10.91.1.0/24"), Subnet6: netip.MustParsePrefix("fd00:91:1::/64")}
			n2 := nat.Network{Name: "n1x", Bridge: "sn-n1x", Subnet: netip.MustParsePrefix("10.91.2.0/24"), Internal: true}
			ep := nat.Endpoint{ID: "e1", Sandbox: "s1", Addr: netip.MustParseAddr("10.91.1.2"), Addr6: netip.MustParseAddr("fd00:91:1::2"),
				Ports: []nat.PortMapping{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, {HostPort: 5353, ContainerPort: 53, Proto: "udp"}}}

			for i := 0; i < 2; i++ { // idempotent
				if err := fw.EnsureNetwork(ectx, n1); err != nil {
					t.Fatal(err)
				}
				if err := fw.EnsureNetwork(ctx, n2); err != nil {
					t.Fatal(err)
				}
				if err := fw.AddEndpoint(ctx, n1, ep); err != nil {
					t.Fatal(err)
				}
			}
			if !strings.Contains(strings.Join(said, "\n"), "ip netns exec "+host.Name()+" iptables -w -t nat -A SANDNET-POSTROUTING -s 10.91.1.0/24") {
				t.Errorf("explain hook did not report the masquerade rule:\n%s", strings.Join(said, "\n"))
			}
			want := len(nat.StaticRules(nat.IPv4)) + len(nat.StaticRules(nat.IPv6)) + len(nat.NetworkRules(n1)) + len(nat.NetworkRules(n2)) + len(nat.EndpointRules(n1, ep))
			if s := save(t, host); strings.Count(s, "-A ") != want {
				t.Errorf("%d sandnet rules after adding twice, want %d:\n%s", strings.Count(s, "-A "), want, s)
			}
			if missing, err := fw.Check(ctx, n1, []nat.Endpoint{ep}); err != nil || len(missing) > 0 {
				t.Fatalf("Check = %v, %v", missing, err)
			}

			// Someone deletes a rule: Check names it, EnsureNetwork puts it back in order.
			testns.Run(t, host, "iptables", "-w", "-t", "filter", "-D", "SANDNET-FORWARD", "-i", "sn-n1", "!", "-o", "sn-n1", "-m", "comment", "--comment", "sandnet net=n1 outbound", "-j", "ACCEPT")
			missing, err := fw.Check(ctx, n1, []nat.Endpoint{ep})
			if err != nil || len(missing) != 1 || missing[0].Comment != "sandnet net=n1 outbound" {
				t.Fatalf("Check after deleting a rule = %v, %v", missing, err)
			}
			if err := fw.EnsureNetwork(ctx, n1); err != nil {
				t.Fatal(err)
			}
			if missing, err := fw.Check(ctx, n1, []nat.Endpoint{ep}); err != nil || len(missing) > 0 {
				t.Fatalf("Check after repair = %v, %v", missing, err)
			}

			for i := 0; i < 2; i++ {
				if err := fw.RemoveEndpoint(ctx, n1, ep); err != nil {
					t.Fatal(err)
				}
			}
			if s := save(t, host); strings.Contains(s, "ep=e1") {
				t.Errorf("endpoint rules left:\n%s", s)
			}
			if err := fw.RemoveNetwork(ctx, n1); err != nil {
				t.Fatal(err)
			}
			// n1x's name extends n1's: its rules and the shared chains stay.
			if s := save(t, host); !strings.Contains(s, "net=n1x") || strings.Contains(s, "net=n1 ") || !strings.Contains(s, ":SANDNET-FORWARD") {
				t.Errorf("after removing n1:\n%s", s)
			}
			for i := 0; i < 2; i++ {
				if err := fw.RemoveNetwork(ctx, n2); err != nil {
					t.Fatal(err)
				}
			}
			if s := save(t, host); s != "" {
				t.Errorf("sandnet rules or chains left after removing every network:\n%s", s)
			}
		})
	}
}

func TestAddEndpointNeedsNetwork(t *testing.T) {
	host := testns.New(t, "host")
	n := nat.Network{Name: "n", Bridge: "sn-n", Subnet: netip.MustParsePrefix("10.91.3.0/24")}
	err := nat.NewIPTables(host).AddEndpoint(context.Background(), n, nat.Endpoint{ID: "e", Addr: netip.MustParseAddr("10.91.3.2"),
		Ports: []nat.PortMapping{{HostPort: 1, ContainerPort: 1, Proto: "tcp"}}})
	if err == nil {
		t.Fatal("published a port on a network whose rules are not there")
	}
}
