package sandnet

// checkClusterCIDR validates Network.ClusterCIDR for the drivers that
// masquerade (bridge): an IPv4 prefix without host bits, on a network that
// goes out (it only changes what is masqueraded).
func checkClusterCIDR(n *Network) error {
	c := n.ClusterCIDR
	switch {
	case !c.IsValid():
		return nil
	case n.Internal:
		return invalidf("network %q: clusterCIDR on an internal network (nothing is masqueraded there)", n.Name)
	case !c.Addr().Is4():
		return invalidf("network %q: clusterCIDR %s is not IPv4", n.Name, c)
	case c.Masked() != c:
		return invalidf("network %q: clusterCIDR %s has host bits set (did you mean %s?)", n.Name, c, c.Masked())
	}
	return nil
}
