package nat

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, rules []Rule) {
	t.Helper()
	var b strings.Builder
	for _, r := range rules {
		b.WriteString(r.Command() + "\n")
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./nat -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("%s differs from the rendering; got:\n%s\nwant:\n%s\n(run go test ./nat -update if the change is meant)", path, b.String(), want)
	}
}

var (
	dual = Network{
		Name: "web", Bridge: "sn-web",
		Subnet: netip.MustParsePrefix("10.88.0.0/24"), Subnet6: netip.MustParsePrefix("fd00:88::/64"),
		Gateway: netip.MustParseAddr("10.88.0.1"), Gateway6: netip.MustParseAddr("fd00:88::1"),
	}
	internal = Network{Name: "db", Bridge: "sn-db", Subnet: netip.MustParsePrefix("10.89.0.0/24"), Gateway: netip.MustParseAddr("10.89.0.1"), Internal: true, NoICC: true}
)

func TestRenderStatic(t *testing.T) {
	golden(t, "static", append(StaticRules(IPv4), StaticRules(IPv6)...))
}

func TestRenderNetwork(t *testing.T) {
	golden(t, "network-dual", NetworkRules(dual))
	golden(t, "network-internal-noicc", NetworkRules(internal))
	routed := Network{Name: "lab", Bridge: "sn-lab", Subnet: netip.MustParsePrefix("10.61.0.0/24"), Routed: true}
	golden(t, "network-routed", NetworkRules(routed))
}

func TestRenderEndpoint(t *testing.T) {
	var ports []PortMapping
	for _, s := range []string{"8080:80", "127.0.0.1:8081:80", "5353:53/udp", "[fd00:1::1]:8443:443", "0.0.0.0:9000-9001:9000-9001/sctp"} {
		ps, err := ParsePort(s)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ps...)
	}
	e := Endpoint{ID: "0123456789abcdef", Sandbox: "sbx1",
		Addr: netip.MustParseAddr("10.88.0.2"), Addr6: netip.MustParseAddr("fd00:88::2"), Ports: ports}
	if err := Validate(dual, e); err != nil {
		t.Fatal(err)
	}
	golden(t, "endpoint", EndpointRules(dual, e))
}

func TestCommentsOwnedByName(t *testing.T) {
	e := Endpoint{ID: "abc", Addr: netip.MustParseAddr("10.88.0.2"), Ports: []PortMapping{{HostPort: 1, ContainerPort: 2, Proto: "tcp"}}}
	for _, r := range append(NetworkRules(dual), EndpointRules(dual, e)...) {
		if !strings.HasPrefix(r.Comment, NetComment("web")) {
			t.Errorf("rule %s: comment %q does not name the network", r, r.Comment)
		}
	}
	for _, r := range EndpointRules(dual, e) {
		if !strings.HasPrefix(r.Comment, EndpointComment("web", "abc")) {
			t.Errorf("rule %s: comment %q does not name the endpoint", r, r.Comment)
		}
	}
	// A network whose name extends another's must not match its prefix.
	if strings.HasPrefix(NetComment("web2"), NetComment("web")) {
		t.Error("network comments are prefixes of each other")
	}
}

func TestCommentOfSavedLine(t *testing.T) {
	for line, want := range map[string]string{
		`-A X -s 10.0.0.0/24 -m comment --comment "sandnet net=a masquerade" -j MASQUERADE`: "sandnet net=a masquerade",
		`-A FORWARD -m comment --comment sandnet -j SANDNET-FORWARD`:                        "sandnet",
		`-A FORWARD -j ACCEPT`: "",
	} {
		if got := commentOf(line); got != want {
			t.Errorf("commentOf(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	v4only := Network{Name: "n", Bridge: "b", Subnet: netip.MustParsePrefix("10.1.0.0/24")}
	for _, tc := range []struct {
		name string
		p    PortMapping
		ok   bool
	}{
		{"plain", PortMapping{HostPort: 80, ContainerPort: 80, Proto: "tcp"}, true},
		{"no host port", PortMapping{ContainerPort: 80, Proto: "tcp"}, false},
		{"bad proto", PortMapping{HostPort: 80, ContainerPort: 80, Proto: "icmp"}, false},
		{"v6 on v4 net", PortMapping{HostIP: netip.MustParseAddr("fd00::1"), HostPort: 80, ContainerPort: 80}, false},
		{"::1", PortMapping{HostIP: netip.IPv6Loopback(), HostPort: 80, ContainerPort: 80}, false},
	} {
		err := Validate(v4only, Endpoint{Ports: []PortMapping{tc.p}})
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
	dup := []PortMapping{{HostPort: 80, ContainerPort: 80}, {HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 80, ContainerPort: 81}}
	if err := Validate(v4only, Endpoint{Ports: dup}); err == nil {
		t.Error("two mappings of one host port validated")
	}
}
