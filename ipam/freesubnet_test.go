package ipam

import (
	"net/netip"
	"testing"
)

func TestFreeSubnet(t *testing.T) {
	base := netip.MustParsePrefix("10.89.0.0/16")
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	for _, c := range []struct {
		taken []netip.Prefix
		want  string
	}{
		{nil, "10.89.0.0/24"},
		{[]netip.Prefix{p("10.89.0.0/24"), {}}, "10.89.1.0/24"},
		{[]netip.Prefix{p("10.89.0.0/23"), p("10.89.2.128/25")}, "10.89.3.0/24"},
		{[]netip.Prefix{p("10.0.0.0/8")}, ""},
	} {
		got, ok := FreeSubnet(base, 24, c.taken)
		if c.want == "" {
			if ok {
				t.Errorf("FreeSubnet(%v) = %s, want none", c.taken, got)
			}
			continue
		}
		if !ok || got != p(c.want) {
			t.Errorf("FreeSubnet(%v) = %s %v, want %s", c.taken, got, ok, c.want)
		}
	}
}
