package sandnet

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/macvlan"
	"github.com/sandnet/sandnet/overlay"
)

// checkDriverFields validates the macvlan and overlay fields and fills in
// their defaults: they belong to their driver only, so a bridge network with
// a Parent is a mistake worth reporting rather than ignoring.
func (n *Network) checkDriverFields() error {
	if n.Driver != DriverMacvlan && (n.Parent != "" || n.MacvlanMode != "") {
		return invalidf("network %q: parent and macvlan mode belong to the macvlan driver, not %s", n.Name, n.Driver)
	}
	if n.Driver != DriverOverlay && (n.VNI != 0 || n.VXLANPort != 0 || n.Underlay.IsValid() || len(n.Peers) > 0) {
		return invalidf("network %q: VNI, VXLAN port, underlay and peers belong to the overlay driver, not %s", n.Name, n.Driver)
	}
	switch n.Driver {
	case DriverMacvlan:
		if n.Parent == "" {
			return invalidf("network %q: a macvlan network needs a parent link (e.g. eth0, or eth0.50 for VLAN 50)", n.Name)
		}
		if err := ifname.Check(n.Parent); err != nil {
			return fmt.Errorf("network %q: parent: %w", n.Name, err)
		}
		if _, _, _, err := macvlan.SplitVLAN(n.Parent); err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
		if n.MacvlanMode == "" {
			n.MacvlanMode = macvlan.ModeBridge
		}
		if err := macvlan.CheckMode(n.MacvlanMode); err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
	case DriverOverlay:
		if n.VNI < 1 || n.VNI > 1<<24-1 {
			return invalidf("network %q: an overlay needs a VNI from 1 to 16777215 (the same on every host), got %d", n.Name, n.VNI)
		}
		if n.VXLANPort == 0 {
			n.VXLANPort = overlay.DefaultPort
		}
		if n.VXLANPort < 1 || n.VXLANPort > 65535 {
			return invalidf("network %q: VXLAN port %d out of range 1-65535", n.Name, n.VXLANPort)
		}
		// A zero Underlay with peers is the source address of the route to the
		// first peer, filled in by the overlay driver (defaultUnderlay).
		if (n.Underlay.IsValid() || len(n.Peers) == 0) && (!n.Underlay.IsValid() || n.Underlay.IsUnspecified() || n.Underlay.IsMulticast()) {
			return invalidf("network %q: an overlay needs this host's underlay address (Underlay), or peers to find it from, got %v", n.Name, n.Underlay)
		}
		n.Underlay = n.Underlay.Unmap()
		peers, err := normPeers(n.Name, n.Underlay, n.Peers)
		if err != nil {
			return err
		}
		n.Peers = peers
	}
	return nil
}

// normPeers checks overlay peers against the host's underlay address and
// returns them sorted, without duplicates.
func normPeers(network string, underlay netip.Addr, peers []netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, p := range peers {
		if err := checkPeer(network, underlay, p); err != nil {
			return nil, err
		}
		out = append(out, p.Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

func checkPeer(network string, underlay, p netip.Addr) error {
	p = p.Unmap()
	switch {
	case !p.IsValid() || p.IsUnspecified() || p.IsMulticast():
		return invalidf("network %q: peer %v is not a unicast address", network, p)
	case underlay.IsValid() && p.Is4() != underlay.Is4():
		return invalidf("network %q: peer %s and underlay %s are of different address families", network, p, underlay)
	case p == underlay:
		return invalidf("network %q: peer %s is this host's own underlay address", network, p)
	}
	return nil
}
