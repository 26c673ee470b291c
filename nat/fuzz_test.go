package nat

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzParsePort: any spec is either refused with ErrInvalid, or parsed
// into mappings that are valid, of one protocol, in order, and that print
// back to specs ParsePort reads to the same mappings; the rules rendered
// from them are one line each.
func FuzzParsePort(f *testing.F) {
	for _, s := range []string{
		"80", "8080:80", "8080:80/udp", "127.0.0.1:8080:80", "127.0.0.1::80", "[::1]:8080:80",
		"8000-8010:8000-8010", "[fd00::1]:1-2:3-4/sctp", "0:80", "65536:80", "1-0", "80/icmp",
		"::80", "[::ffff:1.2.3.4]:1:2", "[fe80::1%eth0]:1:2", "1:2:3:4", "80/TCP", "80/tcp/udp",
		"1.2.3.4:5:6\n-A INPUT", " 80", "80 -j ACCEPT", "-1:80", "+80", "0x50", "1-65535:1-65535",
	} {
		f.Add(s)
	}
	n := Network{Name: "fuzz", Bridge: "br0"}
	f.Fuzz(func(t *testing.T, spec string) {
		ms, err := ParsePort(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParsePort(%q) = %v, not ErrInvalid", spec, err)
			}
			return
		}
		if len(ms) == 0 || len(ms) > 65535 {
			t.Fatalf("ParsePort(%q) gave %d mappings", spec, len(ms))
		}
		for i, m := range ms {
			if m.ContainerPort == 0 || checkProto(m.Proto) != nil || m.Proto != ms[0].Proto {
				t.Fatalf("ParsePort(%q)[%d] = %+v", spec, i, m)
			}
			if m.HostIP.IsValid() && (m.HostIP.Zone() != "" || m.HostIP.Is4In6()) {
				t.Fatalf("ParsePort(%q) accepted host address %s", spec, m.HostIP)
			}
			if i > 0 && m.ContainerPort != ms[i-1].ContainerPort+1 {
				t.Fatalf("ParsePort(%q): ports out of order", spec)
			}
			back, err := ParsePort(m.String())
			if err != nil || len(back) != 1 || back[0] != m {
				t.Fatalf("ParsePort(%q)[%d] prints as %q, which parses to %v, %v", spec, i, m.String(), back, err)
			}
			if len(ms) > 8 {
				continue // rendering every port of a big range is slow and says nothing more
			}
			if m.HostPort == 0 {
				m.HostPort = 1
			}
			e := Endpoint{ID: "e", Sandbox: "s", Addr: netip.MustParseAddr("10.0.0.2"), Ports: []PortMapping{m}}
			n.Subnet = netip.MustParsePrefix("10.0.0.0/24")
			for _, r := range EndpointRules(n, e) {
				if strings.ContainsAny(r.Line(), "\n\r") || !slices.Contains(r.Args, r.Comment) {
					t.Fatalf("rule for %q: %q", spec, r.Line())
				}
			}
		}
	})
}
