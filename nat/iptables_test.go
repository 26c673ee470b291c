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

// backends are the Backends these tests run against, with how to see
// their rules and break one by hand.
var backends = []struct {
	name string
	new  func(*netns.NS) nat.Backend
	// rules counts sandnet's rules in ns (published ports included: rules
	// for iptables, map elements for nftables).
	rules func(t *testing.T, ns *netns.NS) int
	// want is the count for networks and endpoints as rendered.
	want func(nets []nat.Network, eps map[string][]nat.Endpoint) int
	// deleteOutbound deletes network n1's IPv4 outbound rule by hand.
	deleteOutbound func(t *testing.T, ns *netns.NS)
	// hint is what the explain hook reports for n1's masquerade rule.
	hint string
}{
	{
		name: "iptables", new: func(ns *netns.NS) nat.Backend { return nat.NewIPTables(ns) },
		rules: func(t *testing.T, ns *netns.NS) int { return strings.Count(save(t, ns), "-A ") },
		want: func(nets []nat.Network, eps map[string][]nat.Endpoint) int {
			n := len(nat.StaticRules(nat.IPv4)) + len(nat.StaticRules(nat.IPv6))
			for _, net := range nets {
				n += len(nat.NetworkRules(net))
				for _, e := range eps[net.Name] {
					n += len(nat.EndpointRules(net, e))
				}
			}
			return n
		},
		deleteOutbound: func(t *testing.T, ns *netns.NS) {
			testns.Run(t, ns, "iptables", "-w", "-t", "filter", "-D", "SANDNET-FORWARD", "-i", "sn-n1", "!", "-o", "sn-n1", "-m", "comment", "--comment", "sandnet net=n1 outbound", "-j", "ACCEPT")
		},
		hint: "iptables -w -t nat -A SANDNET-POSTROUTING -s 10.91.1.0/24",
	},
	{
		name: "nftables", new: func(ns *netns.NS) nat.Backend { return nat.NewNFTables(ns) },
		rules: func(t *testing.T, ns *netns.NS) int {
			return nftRules(t, ns) + strings.Count(nftList(t, ns), " ep=")
		},
		want: func(nets []nat.Network, eps map[string][]nat.Endpoint) int {
			n := nat.NFTStaticRules()
			for _, net := range nets {
				n += nat.NFTNetworkRules(net)
				for _, e := range eps[net.Name] {
					n += len(nat.EndpointRules(net, e)) // one element per iptables rule
				}
			}
			return n
		},
		deleteOutbound: func(t *testing.T, ns *netns.NS) {
			h := nftHandle(t, ns, "forward", `iifname "sn-n1" oifname != "sn-n1" accept comment "sandnet net=n1 outbound"`)
			testns.Run(t, ns, "nft", "delete", "rule", "inet", "sandnet", "forward", "handle", h)
		},
		hint: `nft 'add rule inet sandnet postrouting ip saddr 10.91.1.0/24 oifname != "sn-n1" fib daddr type != local masquerade`,
	},
}

// nftList is the sandnet part of nft list ruleset in ns (with handles),
// plus any sandnet rule in iptables' own tables.
func nftList(t *testing.T, ns *netns.NS) string {
	t.Helper()
	out := testns.Run(t, ns, "nft", "-a", "list", "ruleset")
	var b strings.Builder
	in := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "table ") {
			in = strings.HasPrefix(l, "table inet sandnet ")
		}
		if in || strings.Contains(strings.ToLower(l), "sandnet") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// nftRules counts the rules (lines with a handle, in chains) of table inet sandnet.
func nftRules(t *testing.T, ns *netns.NS) int {
	n := 0
	for _, l := range strings.Split(nftList(t, ns), "\n") {
		if strings.Contains(l, " # handle ") && strings.HasPrefix(l, "\t\t") {
			n++
		}
	}
	return n
}

func nftHandle(t *testing.T, ns *netns.NS, chain, contains string) string {
	t.Helper()
	out := testns.Run(t, ns, "nft", "-a", "list", "chain", "inet", "sandnet", chain)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, contains) {
			_, h, _ := strings.Cut(l, "# handle ")
			return strings.TrimSpace(h)
		}
	}
	t.Fatalf("no rule %q in chain %s:\n%s", contains, chain, out)
	return ""
}

// residue is everything sandnet in ns: iptables-save lines and the
// sandnet table of nft list ruleset.
func residue(t *testing.T, ns *netns.NS) string {
	return save(t, ns) + nftList(t, ns)
}

// needBackend skips a test of the iptables backend where iptables is not
// installed.
func needBackend(t testing.TB, name string) {
	if name == "iptables" {
		testns.NeedProgram(t, "iptables backend", "iptables", "ip6tables")
	}
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
			needBackend(t, bk.name)
			ctx := context.Background()
			host := testns.New(t, "host")
			fw := bk.new(host)
			var (
				mu   sync.Mutex
				said []string
			)
			ectx := explain.With(ctx, func(cmd string) { mu.Lock(); said = append(said, cmd); mu.Unlock() })
			n1 := nat.Network{Name: "n1", Bridge: "sn-n1", Subnet: netip.MustParsePrefix("10.91.1.0/24"), Subnet6: netip.MustParsePrefix("fd00:91:1::/64"),
				Gateway: netip.MustParseAddr("10.91.1.1"), Gateway6: netip.MustParseAddr("fd00:91:1::1")}
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
			if !strings.Contains(strings.Join(said, "\n"), "ip netns exec "+host.Name()+" "+bk.hint) {
				t.Errorf("explain hook did not report the masquerade rule:\n%s", strings.Join(said, "\n"))
			}
			want := bk.want([]nat.Network{n1, n2}, map[string][]nat.Endpoint{"n1": {ep}})
			if got := bk.rules(t, host); got != want {
				t.Errorf("%d sandnet rules after adding twice, want %d:\n%s", got, want, residue(t, host))
			}
			if missing, err := fw.Check(ctx, n1, []nat.Endpoint{ep}); err != nil || len(missing) > 0 {
				t.Fatalf("Check = %v, %v", missing, err)
			}

			// Someone deletes a rule: Check names it, EnsureNetwork puts it back in order.
			bk.deleteOutbound(t, host)
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
			if s := residue(t, host); strings.Contains(s, "ep=e1") {
				t.Errorf("endpoint rules left:\n%s", s)
			}
			if err := fw.RemoveNetwork(ctx, n1); err != nil {
				t.Fatal(err)
			}
			// n1x's name extends n1's: its rules and the shared chains stay.
			if s := residue(t, host); !strings.Contains(s, "net=n1x") || strings.Contains(s, "net=n1 ") || !(strings.Contains(s, ":SANDNET-FORWARD") || strings.Contains(s, "chain forward")) {
				t.Errorf("after removing n1:\n%s", s)
			}
			for i := 0; i < 2; i++ {
				if err := fw.RemoveNetwork(ctx, n2); err != nil {
					t.Fatal(err)
				}
			}
			if s := residue(t, host); s != "" {
				t.Errorf("sandnet rules or chains left after removing every network:\n%s", s)
			}
		})
	}
}

func TestAddEndpointNeedsNetwork(t *testing.T) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			needBackend(t, bk.name)
			host := testns.New(t, "host")
			n := nat.Network{Name: "n", Bridge: "sn-n", Subnet: netip.MustParsePrefix("10.91.3.0/24")}
			err := bk.new(host).AddEndpoint(context.Background(), n, nat.Endpoint{ID: "e", Addr: netip.MustParseAddr("10.91.3.2"),
				Ports: []nat.PortMapping{{HostPort: 1, ContainerPort: 1, Proto: "tcp"}}})
			if err == nil {
				t.Fatal("published a port on a network whose rules are not there")
			}
		})
	}
}
