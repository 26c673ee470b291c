package nat

import (
	"net/netip"
	"strings"
	"testing"
)

// TestClusterCIDRMasquerade: a network with a ClusterCIDR masquerades
// everything but traffic to the cluster, routed or not; an internal one
// masquerades nothing. Both backends render the same exception.
func TestClusterCIDRMasquerade(t *testing.T) {
	cl := netip.MustParsePrefix("10.244.0.0/16")
	for _, routed := range []bool{false, true} {
		n := Network{Name: "pods", Bridge: "sn-pods", Subnet: netip.MustParsePrefix("10.244.1.0/24"), Routed: routed, ClusterCIDR: cl}
		var masq []string
		for _, r := range NetworkRules(n) {
			if strings.HasSuffix(r.Comment, "masquerade") {
				masq = append(masq, r.String())
			}
		}
		if len(masq) != 1 || !strings.Contains(masq[0], "! -d 10.244.0.0/16") {
			t.Errorf("routed=%v: iptables masquerade rules %q, want one excepting the cluster", routed, masq)
		}
		var nft []string
		for _, r := range nftNetworkRules(n) {
			if strings.HasSuffix(r.Comment, "masquerade") {
				nft = append(nft, r.Text)
			}
		}
		if len(nft) != 1 || !strings.Contains(nft[0], "ip daddr != 10.244.0.0/16") {
			t.Errorf("routed=%v: nftables masquerade rules %q, want one excepting the cluster", routed, nft)
		}
	}
	n := Network{Name: "pods", Bridge: "sn-pods", Subnet: netip.MustParsePrefix("10.244.1.0/24"), Routed: true}
	for _, r := range NetworkRules(n) {
		if strings.HasSuffix(r.Comment, "masquerade") {
			t.Errorf("routed without a cluster CIDR: masquerade rule %s", r)
		}
	}
}
