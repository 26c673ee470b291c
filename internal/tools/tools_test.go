package tools

import "testing"

func TestNotFound(t *testing.T) {
	for name, want := range map[string]string{
		"iptables":       "iptables not found (apt-get install iptables)",
		"ip6tables-save": "ip6tables-save not found (apt-get install iptables)",
		"nft":            "nft not found (apt-get install nftables)",
		"ping":           "ping not found (apt-get install iputils-ping)",
		"dig":            "dig not found (apt-get install dnsutils)",
		"dot":            "dot not found (apt-get install graphviz)",
	} {
		if got := NotFound(name); got != want {
			t.Errorf("NotFound(%q) = %q, want %q", name, got, want)
		}
	}
	if Installed("sandnet-no-such-program") {
		t.Error("a program that does not exist is installed")
	}
}
