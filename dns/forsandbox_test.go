package dns

import (
	"net/netip"
	"slices"
	"testing"
)

func TestForSandbox(t *testing.T) {
	a := netip.MustParseAddr
	host := ResolvConf{Nameservers: []netip.Addr{a("192.0.2.53")}, Search: []string{"lan"}, Options: []string{"ndots:1"}}
	for _, c := range []struct {
		caller, own, want []netip.Addr
	}{
		{nil, nil, host.Nameservers},
		{nil, []netip.Addr{a("10.89.0.1")}, []netip.Addr{a("10.89.0.1")}},
		{[]netip.Addr{a("198.51.100.1")}, []netip.Addr{a("10.89.0.1")}, []netip.Addr{a("198.51.100.1")}},
	} {
		rc := host.ForSandbox(c.caller, c.own, []string{"corp", "lan"}, []string{"edns0"})
		if !slices.Equal(rc.Nameservers, c.want) {
			t.Errorf("caller %v own %v: servers %v, want %v", c.caller, c.own, rc.Nameservers, c.want)
		}
		if !slices.Equal(rc.Search, []string{"lan", "corp"}) || !slices.Equal(rc.Options, []string{"ndots:1", "edns0"}) {
			t.Errorf("search %v options %v", rc.Search, rc.Options)
		}
	}
}
