package sandnet

import (
	"fmt"
	"net/netip"

	"github.com/sandnet/sandnet/ipam"
)

// Driver names a way of connecting sandboxes, as Docker names them; each
// driver's file declares its name as a Driver constant.
type Driver string

// Network describes a network. The zero value of each field means its
// default. A network is created on first use (by Attach or CreateNetwork);
// the same name with a different definition is a conflict (ErrExists). A
// Network with only a Name refers to an existing network.
type Network struct {
	// Name identifies the network on its Host: letters, digits, '.', '_', '-', at most 64 bytes.
	Name string `json:"name"`
	// Driver defaults to bridge.
	Driver Driver `json:"driver,omitempty"`

	// Subnet is the IPv4 subnet, e.g. 10.88.0.0/24. Bridge networks with none
	// get a free /24 from 10.89.0.0/16, as netavark does.
	Subnet netip.Prefix `json:"subnet,omitzero"`
	// Gateway defaults to the subnet's first address.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// IPRange restricts the addresses handed out to sandboxes to this part of Subnet.
	IPRange netip.Prefix `json:"ipRange,omitzero"`
	// Subnet6 adds IPv6 (dual stack), e.g. fd00:88::/64.
	Subnet6 netip.Prefix `json:"subnet6,omitzero"`
	// Gateway6 defaults to the first address of Subnet6.
	Gateway6 netip.Addr `json:"gateway6,omitzero"`
	// IPRange6 restricts IPv6 addresses handed out to this part of Subnet6.
	IPRange6 netip.Prefix `json:"ipRange6,omitzero"`

	// MTU of the bridge and the sandboxes' interfaces. Default: the MTU of the
	// host namespace's default-route interface, else 1500.
	MTU int `json:"mtu,omitempty"`
	// Internal networks have no way out: no masquerade, no forwarding out.
	Internal bool `json:"internal,omitempty"`
	// DNSForward lets the name server of an Internal network forward the
	// names that are not the network's to the host's upstream servers.
	// Off, an internal network's server answers its own names and NXDOMAIN
	// for the rest, so nothing inside it reaches the outside through DNS.
	// (Other networks' servers always forward.)
	DNSForward bool `json:"dnsForward,omitempty"`
	// NoICC forbids traffic between sandboxes of this network (Docker's
	// enable_icc=false); they still reach the outside and published ports work.
	NoICC bool `json:"noICC,omitempty"`
	// Routed networks are reachable by their addresses from outside, without
	// NAT either way (Docker's gateway mode "routed"): sandboxes keep their
	// own source addresses going out, and hosts that route the subnet to
	// this host reach them directly. For routed multi-host labs.
	Routed bool `json:"routed,omitempty"`
	// ClusterCIDR (IPv4) is never masqueraded: traffic from the subnet to it
	// keeps its source address (pods of other nodes see the pod's own
	// address). Set, it also means that traffic to anywhere else is
	// masqueraded, on a Routed network too: a Routed network with a
	// ClusterCIDR is reachable directly and NATed only beyond the cluster.
	// Bridge networks only.
	ClusterCIDR netip.Prefix `json:"clusterCIDR,omitzero"`
	// Bridge is the bridge device's name; default "sn-" followed by a hash of Name.
	Bridge string `json:"bridge,omitempty"`
	// NoNeighborProxy makes the bridge flood every ARP request to all its
	// ports, as a plain bridge (Docker's, the CNI plugin's) does. By default
	// the bridge answers address resolution for the sandboxes' addresses
	// itself, and each sandbox knows its gateway's MAC, so a network of
	// thousands of sandboxes does not drown in broadcasts. Turn it off only
	// for sandboxes that move their sandnet-assigned addresses or change
	// their MACs themselves (VRRP-style failover between sandboxes): the
	// bridge would go on answering with the address's recorded MAC.
	NoNeighborProxy bool `json:"noNeighborProxy,omitempty"`

	// Parent is the host link macvlan devices hang off; "eth0.50" means VLAN 50 on eth0.
	Parent string `json:"parent,omitempty"`
	// MacvlanMode: bridge (default), private, vepa or passthru.
	MacvlanMode string `json:"macvlanMode,omitempty"`

	// VNI is the overlay's VXLAN network identifier (1 to 16777215).
	VNI uint32 `json:"vni,omitempty"`
	// VXLANPort is the overlay's UDP port; default 4789.
	VXLANPort int `json:"vxlanPort,omitempty"`
	// Underlay is this host's address on the physical network, the VXLAN source.
	Underlay netip.Addr `json:"underlay,omitzero"`
	// Peers are the other hosts' underlay addresses.
	Peers []netip.Addr `json:"peers,omitempty"`
}

// checkName validates a network or sandbox name: they become file names and
// parts of rule comments, so they are kept to a safe alphabet.
func checkName(what, name string) error {
	if !validName(name) {
		return invalidf("%s name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

// validName reports whether name is 1 to 64 letters, digits, '.', '_' or
// '-', starting with a letter or digit. (A regexp saying so compiles into a
// large program at every start of the process, which a CNI plugin, a
// process per call, would pay each time.)
func validName(name string) bool {
	if name == "" || len(name) > 64 || !isAlnum(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// withDefaults validates n and fills in its defaults, except the ones that
// depend on the host (free subnet, MTU).
func (n Network) withDefaults() (Network, error) {
	if err := checkName("network", n.Name); err != nil {
		return n, err
	}
	if n.Driver == "" {
		n.Driver = registry[0].name // the first driver is the default
	}
	drv, err := driverFor(n.Driver)
	if err != nil {
		return n, fmt.Errorf("network %q: %w", n.Name, err)
	}
	if n.MTU != 0 && (n.MTU < 68 || n.MTU > 65535) {
		return n, invalidf("network %q: mtu %d out of range 68-65535", n.Name, n.MTU)
	}
	// A field that belongs to another driver is a mistake worth reporting
	// rather than ignoring.
	for _, r := range registry {
		if set := r.drv.setFields(&n); r.name != n.Driver && set != "" {
			return n, invalidf("network %q: %s belong to the %s driver, not %s", n.Name, set, r.name, n.Driver)
		}
	}
	if err := drv.normalize(&n); err != nil {
		return n, err
	}
	if !drv.traits().ipam {
		return n, nil
	}
	if n.Gateway, err = ipam.CheckSubnet(n.Subnet, n.Gateway, n.IPRange, false); err != nil {
		return n, fmt.Errorf("network %q: %w", n.Name, err)
	}
	if n.Gateway6, err = ipam.CheckSubnet(n.Subnet6, n.Gateway6, n.IPRange6, true); err != nil {
		return n, fmt.Errorf("network %q: %w", n.Name, err)
	}
	return n, nil
}

// isReference reports whether n names a network without defining it.
func (n Network) isReference() bool {
	return fmt.Sprint(n) == fmt.Sprint(Network{Name: n.Name})
}

// sameAs reports whether the normalised request n describes the recorded
// network o. Fields the request leaves to the host (a chosen subnet, the
// MTU, and what the driver says: driver.settle) match whatever was chosen.
func (n Network) sameAs(o Network) bool {
	if !n.Subnet.IsValid() && !n.Subnet6.IsValid() {
		n.Subnet, n.Gateway = o.Subnet, o.Gateway
	}
	if n.MTU == 0 {
		n.MTU = o.MTU
	}
	if drv, err := driverFor(n.Driver); err == nil {
		drv.settle(&n, &o)
	}
	return fmt.Sprint(n) == fmt.Sprint(o)
}

// overlaps reports whether two prefixes share any address.
func overlaps(a, b netip.Prefix) bool {
	return a.IsValid() && b.IsValid() && a.Overlaps(b)
}
