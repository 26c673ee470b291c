package nat_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

func benchNet(i int) nat.Network {
	return nat.Network{Name: fmt.Sprintf("b%d", i), Bridge: fmt.Sprintf("sn-b%d", i),
		Subnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", 100+i)), Subnet6: netip.MustParsePrefix(fmt.Sprintf("fd00:%d::/64", 100+i))}
}

func benchEP(n nat.Network, i int) nat.Endpoint {
	a := n.Subnet.Addr().As4()
	a[2], a[3] = byte((i+2)>>8), byte(i+2)
	a6 := n.Subnet6.Addr().As16()
	a6[14], a6[15] = byte((i+2)>>8), byte(i+2)
	return nat.Endpoint{ID: fmt.Sprintf("e%d", i), Sandbox: fmt.Sprintf("s%d", i), Addr: netip.AddrFrom4(a), Addr6: netip.AddrFrom16(a6),
		Ports: []nat.PortMapping{{HostPort: uint16(20000 + i), ContainerPort: 80, Proto: "tcp"}}}
}

// TestNFTablesEndpointIsElementChange: publishing and unpublishing a port
// adds or removes map elements only; the rules stay the same.
func TestNFTablesEndpointIsElementChange(t *testing.T) {
	ctx := context.Background()
	host := testns.New(t, "host")
	fw := nat.NewNFTables(host)
	t.Cleanup(func() { fw.Close() })
	n := benchNet(1)
	if err := fw.EnsureNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	before := testns.Run(t, host, "nft", "-a", "list", "chains")
	rules := nftRules(t, host)
	for i := 0; i < 20; i++ {
		if err := fw.AddEndpoint(ctx, n, benchEP(n, i)); err != nil {
			t.Fatal(err)
		}
	}
	list := nftList(t, host)
	if got := nftRules(t, host); got != rules {
		t.Errorf("%d rules after 20 endpoints, %d before:\n%s", got, rules, list)
	}
	if got := strings.Count(list, " ep="); got != 40 { // tcp on IPv4 and IPv6
		t.Errorf("%d map elements, want 40:\n%s", got, list)
	}
	if after := testns.Run(t, host, "nft", "-a", "list", "chains"); after != before {
		t.Errorf("chains changed:\n%s\n%s", before, after)
	}
	// An element of another endpoint under the same host port is not removed.
	other := benchEP(n, 3)
	other.ID = "intruder"
	other.Addr = netip.MustParseAddr("10.101.9.9")
	if err := fw.RemoveEndpoint(ctx, n, other); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nftList(t, host), "ep=e3 ") {
		t.Error("removing another endpoint's port removed e3's element")
	}
	if err := fw.AddEndpoint(ctx, n, other); err == nil {
		t.Error("mapped a host port that another sandbox holds")
	}
	for i := 0; i < 20; i++ {
		if err := fw.RemoveEndpoint(ctx, n, benchEP(n, i)); err != nil {
			t.Fatal(err)
		}
	}
	if list := nftList(t, host); strings.Contains(list, " ep=") || nftRules(t, host) != rules {
		t.Errorf("after removing every endpoint:\n%s", list)
	}
	if err := fw.RemoveNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if out := testns.Run(t, host, "nft", "list", "ruleset"); strings.Contains(out, "sandnet") {
		t.Errorf("nft list ruleset after removing the last network:\n%s", out)
	}
}

// TestNFTablesCoexistsWithIPTablesDrop: with iptables-nft's FORWARD policy
// DROP, the network's accept rules go into that chain too, where
// iptables-save shows them, and leave with the network.
func TestNFTablesCoexistsWithIPTablesDrop(t *testing.T) {
	ctx := context.Background()
	host := testns.New(t, "host")
	testns.Run(t, host, "iptables", "-w", "-P", "FORWARD", "DROP")
	fw := nat.NewNFTables(host)
	t.Cleanup(func() { fw.Close() })
	n := benchNet(2)
	n.Subnet6 = netip.Prefix{}
	if err := fw.EnsureNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	saved := testns.Run(t, host, "iptables-save", "-t", "filter")
	for _, want := range []string{`-A FORWARD -i sn-b2 -m comment --comment "sandnet net=b2 compat-i" -j ACCEPT`, `-A FORWARD -o sn-b2 -m comment --comment "sandnet net=b2 compat-o" -j ACCEPT`} {
		if !strings.Contains(saved, want) {
			t.Errorf("iptables-save lacks %q:\n%s", want, saved)
		}
	}
	if m, err := fw.Check(ctx, n, nil); err != nil || len(m) > 0 {
		t.Errorf("Check = %v, %v", m, err)
	}
	testns.Run(t, host, "iptables", "-w", "-D", "FORWARD", "-i", "sn-b2", "-m", "comment", "--comment", "sandnet net=b2 compat-i", "-j", "ACCEPT")
	if m, err := fw.Check(ctx, n, nil); err != nil || len(m) != 1 || !strings.HasPrefix(m[0].Command(), "iptables -w -t filter -I FORWARD 1 -i sn-b2") {
		t.Errorf("Check after deleting the compat rule = %v, %v", m, err)
	}
	if err := fw.EnsureNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if m, err := fw.Check(ctx, n, nil); err != nil || len(m) > 0 {
		t.Errorf("Check after repair = %v, %v", m, err)
	}
	if err := fw.RemoveNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if s := residue(t, host); s != "" {
		t.Errorf("left after removing the network:\n%s", s)
	}
}

// BenchmarkEndpoint measures AddEndpoint+RemoveEndpoint of one endpoint
// with one published port on a network that holds N others, per backend.
func BenchmarkEndpoint(b *testing.B) {
	for _, bk := range backends {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/endpoints=%d", bk.name, n), func(b *testing.B) {
				needBackend(b, bk.name)
				ctx := context.Background()
				host := testns.New(b, "host")
				fw := bk.new(host)
				net := benchNet(3)
				if err := fw.EnsureNetwork(ctx, net); err != nil {
					b.Fatal(err)
				}
				for i := 0; i < n; i++ {
					if err := fw.AddEndpoint(ctx, net, benchEP(net, i)); err != nil {
						b.Fatal(err)
					}
				}
				ep := benchEP(net, 5000)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := fw.AddEndpoint(ctx, net, ep); err != nil {
						b.Fatal(err)
					}
					if err := fw.RemoveEndpoint(ctx, net, ep); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if err := fw.RemoveNetwork(ctx, net); err != nil {
					b.Fatal(err)
				}
				if c, ok := fw.(interface{ Close() error }); ok {
					c.Close()
				}
			})
		}
	}
}

var _ = netns.Current
