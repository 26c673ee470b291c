package nat_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
)

// adminTable is an administrator's own table, saved and restored with
// sandnet's: a restore that fails on sandnet's part loses it too.
const adminTable = `table inet admin {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 accept comment "ssh"
	}
}
`

// TestNFTablesRulesetRestores: what nftables.service and every admin do to
// persist a firewall, nft list ruleset > saved; nft flush ruleset; nft -f
// saved, loads sandnet's table back (every set and map, with elements)
// along with the admin's own, and the backend finds nothing missing.
func TestNFTablesRulesetRestores(t *testing.T) {
	testns.NeedProgram(t, "nft -f round trip", "nft", "iptables")
	ctx := context.Background()
	host := testns.New(t, "host")
	testns.Run(t, host, "iptables", "-w", "-P", "FORWARD", "DROP") // iptables-nft's chain: compat rules too
	admin := filepath.Join(t.TempDir(), "admin.nft")
	os.WriteFile(admin, []byte(adminTable), 0o600)
	testns.Run(t, host, "nft", "-f", admin)
	fw := nat.NewNFTables(host)
	t.Cleanup(func() { fw.Close() })
	n1 := nat.Network{Name: "n1", Bridge: "sn-n1", Subnet: netip.MustParsePrefix("10.91.1.0/24"), Subnet6: netip.MustParsePrefix("fd00:91:1::/64"),
		Gateway: netip.MustParseAddr("10.91.1.1"), Gateway6: netip.MustParseAddr("fd00:91:1::1")}
	n2 := nat.Network{Name: "n2", Bridge: "sn-n2", Subnet: netip.MustParsePrefix("10.91.2.0/24"), Gateway: netip.MustParseAddr("10.91.2.1"), Internal: true, NoICC: true}
	ep := nat.Endpoint{ID: "e1", Sandbox: "s1", Addr: netip.MustParseAddr("10.91.1.2"), Addr6: netip.MustParseAddr("fd00:91:1::2"),
		Ports: []nat.PortMapping{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, {HostPort: 5353, ContainerPort: 53, Proto: "udp"},
			{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8081, ContainerPort: 81, Proto: "tcp"},
			{HostIP: netip.MustParseAddr("fd00:91:9::1"), HostPort: 8082, ContainerPort: 82, Proto: "sctp"}}}
	for _, n := range []nat.Network{n1, n2} {
		if err := fw.EnsureNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.AddEndpoint(ctx, n1, ep); err != nil {
		t.Fatal(err)
	}
	saved := testns.Run(t, host, "nft", "list", "ruleset")
	file := filepath.Join(t.TempDir(), "saved.nft")
	os.WriteFile(file, []byte(saved), 0o600)
	testns.Run(t, host, "nft", "flush", "ruleset")
	if out, err := testns.Try(host, "nft", "-f", file); err != nil {
		t.Fatalf("nft -f of the saved ruleset: %v\n%s\nsaved:\n%s", err, out, saved)
	}
	if again := testns.Run(t, host, "nft", "list", "ruleset"); again != saved {
		t.Errorf("the restored ruleset lists differently:\n%s\nsaved:\n%s", again, saved)
	}
	if !strings.Contains(testns.Run(t, host, "nft", "list", "table", "inet", "admin"), `comment "ssh"`) {
		t.Error("the admin's own table was not restored")
	}
	for _, n := range []nat.Network{n1, n2} {
		var eps []nat.Endpoint
		if n.Name == "n1" {
			eps = []nat.Endpoint{ep}
		}
		if m, err := fw.Check(ctx, n, eps); err != nil || len(m) > 0 {
			t.Errorf("Check of %s after the restore = %v, %v", n.Name, m, err)
		}
	}
	if err := fw.RemoveEndpoint(ctx, n1, ep); err != nil {
		t.Fatal(err)
	}
	for _, n := range []nat.Network{n1, n2} {
		if err := fw.RemoveNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if s := residue(t, host); s != "" {
		t.Errorf("left after removing the networks:\n%s", s)
	}
}
