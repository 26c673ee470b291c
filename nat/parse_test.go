package nat

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestParsePort(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for spec, want := range map[string][]PortMapping{
		"80":                {{ContainerPort: 80, Proto: "tcp"}},
		"8080:80":           {{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		"8080:80/udp":       {{HostPort: 8080, ContainerPort: 80, Proto: "udp"}},
		"8080:80/SCTP":      {{HostPort: 8080, ContainerPort: 80, Proto: "sctp"}},
		"127.0.0.1:8080:80": {{HostIP: lo, HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		"127.0.0.1::80":     {{HostIP: lo, ContainerPort: 80, Proto: "tcp"}},
		"[::1]:8080:80":     {{HostIP: netip.IPv6Loopback(), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		"8000-8002:9000-9002": {
			{HostPort: 8000, ContainerPort: 9000, Proto: "tcp"},
			{HostPort: 8001, ContainerPort: 9001, Proto: "tcp"},
			{HostPort: 8002, ContainerPort: 9002, Proto: "tcp"},
		},
	} {
		got, err := ParsePort(spec)
		if err != nil {
			t.Errorf("ParsePort(%q): %v", spec, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParsePort(%q) = %+v, want %+v", spec, got, want)
		}
		if len(got) == 1 {
			again, err := ParsePort(got[0].String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("ParsePort(%q.String() = %q) = %+v, %v", spec, got[0].String(), again, err)
			}
		}
	}
	for _, bad := range []string{"", "0", "70000", "80/icmp", "a:80", "8000-8001:80", "9-8:9-8", "::1:80:80", "[::1]80:80", "[10.0.0.1]:80:80", "1.2.3.4:5:6:7", "x.y.z.w:80:80"} {
		if _, err := ParsePort(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParsePort(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestConflicts(t *testing.T) {
	p := func(ip string, port uint16, proto string) PortMapping {
		m := PortMapping{HostPort: port, ContainerPort: 1, Proto: proto}
		if ip != "" {
			m.HostIP = netip.MustParseAddr(ip)
		}
		return m
	}
	for _, tc := range []struct {
		a, b PortMapping
		want bool
	}{
		{p("", 80, "tcp"), p("", 80, "tcp"), true},
		{p("", 80, "tcp"), p("", 80, "udp"), false},
		{p("", 80, "tcp"), p("", 81, "tcp"), false},
		{p("", 80, "tcp"), p("127.0.0.1", 80, "tcp"), true},
		{p("0.0.0.0", 80, "tcp"), p("127.0.0.1", 80, "tcp"), true},
		{p("0.0.0.0", 80, "tcp"), p("fd00::1", 80, "tcp"), false},
		{p("127.0.0.1", 80, "tcp"), p("127.0.0.2", 80, "tcp"), false},
		{p("127.0.0.1", 80, ""), p("127.0.0.1", 80, "tcp"), true},
	} {
		if got := Conflicts(tc.a, tc.b); got != tc.want {
			t.Errorf("Conflicts(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}
