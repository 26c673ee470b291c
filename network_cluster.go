package sandnet

// checkClusterCIDR validates Network.ClusterCIDR: an IPv4 prefix without
// host bits, on a bridge network that goes out (it only changes what is
// masqueraded), containing the network's own subnet or beside it.
func (n *Network) checkClusterCIDR() error {
	c := n.ClusterCIDR
	if !c.IsValid() {
		return nil
	}
	switch {
	case n.Driver != DriverBridge:
		return invalidf("network %q: clusterCIDR belongs to the bridge driver, not %s", n.Name, n.Driver)
	case n.Internal:
		return invalidf("network %q: clusterCIDR on an internal network (nothing is masqueraded there)", n.Name)
	case !c.Addr().Is4():
		return invalidf("network %q: clusterCIDR %s is not IPv4", n.Name, c)
	case c.Masked() != c:
		return invalidf("network %q: clusterCIDR %s has host bits set (did you mean %s?)", n.Name, c, c.Masked())
	}
	return nil
}
