package nat

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/sandnet/sandnet/internal/errkind"
)

// Sentinel errors, shared with the rest of sandnet.
var (
	ErrInvalid  = errkind.Invalid
	ErrInUse    = errkind.InUse
	ErrNotFound = errkind.NotFound
)

// Network is what the firewall needs to know about a bridge network.
type Network struct {
	// Name is the network's name; it goes into every rule's comment.
	Name string
	// Bridge is the bridge device in the host namespace.
	Bridge string
	// Subnet and Subnet6 are the network's subnets; either may be zero.
	Subnet, Subnet6 netip.Prefix
	// Gateway and Gateway6 are the bridge's addresses, where the network's
	// name server listens. DNS queries to them (port 53, UDP and TCP) are
	// accepted only from the bridge with a source in the subnet, or from
	// the host itself (lo); either may be zero (no such guard).
	Gateway, Gateway6 netip.Addr
	// Internal networks get no masquerade and nothing is forwarded in or out.
	Internal bool
	// NoICC forbids traffic between the network's sandboxes (enforced by
	// bridge port isolation; the rule here only matters with br_netfilter).
	NoICC bool
	// Routed networks are not masqueraded and accept traffic routed to
	// their sandboxes directly (Docker's gateway mode "routed").
	Routed bool
	// ClusterCIDR (IPv4) is never masqueraded to; when set, traffic to any
	// other destination is masqueraded, also on a Routed network.
	ClusterCIDR netip.Prefix
}

// Endpoint is what the firewall needs to know about one sandbox on a network.
type Endpoint struct {
	// ID identifies the endpoint; it goes into its rules' comments.
	ID string
	// Sandbox names the sandbox, for error messages.
	Sandbox string
	// Addr and Addr6 are the sandbox's addresses on the network.
	Addr, Addr6 netip.Addr
	// Ports are published on the host; host ports must be set (non-zero).
	Ports []PortMapping
}

// Backend installs and removes the rules of networks and endpoints in one
// network namespace (the host's). Every method is idempotent: adding what is
// there and removing what is not are not errors. Rules are owned by name
// (chains SANDNET-*, comments "sandnet net=NAME [ep=ID]"), never found by
// matching addresses.
type Backend interface {
	// EnsureNetwork installs the network's rules (masquerade, forwarding,
	// isolation), and the shared chains and jumps if they are missing.
	EnsureNetwork(ctx context.Context, n Network) error
	// RemoveNetwork removes every rule of the network (its endpoints' too),
	// and the shared chains and jumps when no network is left.
	RemoveNetwork(ctx context.Context, n Network) error
	// AddEndpoint publishes the endpoint's ports and flushes stale conntrack
	// entries for them.
	AddEndpoint(ctx context.Context, n Network, e Endpoint) error
	// RemoveEndpoint removes the endpoint's rules and flushes the conntrack
	// entries of its ports.
	RemoveEndpoint(ctx context.Context, n Network, e Endpoint) error
	// Check returns the rules of the network and of the endpoints given
	// that are missing from the kernel (nil: all present).
	Check(ctx context.Context, n Network, eps []Endpoint) ([]Rule, error)
}

// Holder says who holds a published host port.
type Holder struct {
	Network  string `json:"network"`
	Sandbox  string `json:"sandbox"`
	Endpoint string `json:"endpoint"`
}

// PortConflictError is returned when a host port is already published. It
// matches ErrInUse with errors.Is.
type PortConflictError struct {
	Port   PortMapping
	Holder Holder
}

func (e *PortConflictError) Error() string {
	ip := "all addresses"
	if e.Port.HostIP.IsValid() {
		ip = e.Port.HostIP.String()
	}
	return fmt.Sprintf("host port %d/%s on %s is already published by sandbox %q on network %q: %v",
		e.Port.HostPort, e.Port.proto(), ip, e.Holder.Sandbox, e.Holder.Network, ErrInUse)
}

// Is makes errors.Is(err, ErrInUse) true.
func (e *PortConflictError) Is(target error) bool { return target == ErrInUse }

// Conflicts reports whether two published ports would take the same host
// port: same protocol and port, and host addresses that overlap (the zero
// HostIP means every address of both families; 0.0.0.0 and :: every address
// of one family).
func Conflicts(a, b PortMapping) bool {
	if a.HostPort != b.HostPort || a.proto() != b.proto() {
		return false
	}
	x, y := a.HostIP, b.HostIP
	switch {
	case !x.IsValid() || !y.IsValid():
		return true
	case x.Is4() != y.Is4():
		return false
	default:
		return x == y || x.IsUnspecified() || y.IsUnspecified()
	}
}

// Validate checks e's ports against network n: protocol, ports set, host
// address of a family the network has and that NAT can serve.
func Validate(n Network, e Endpoint) error {
	byPort := make(map[portKey][]PortMapping, len(e.Ports)) // earlier ports: a range costs linear time
	for _, p := range e.Ports {
		if err := checkProto(p.proto()); err != nil {
			return fmt.Errorf("port %s: %v: %w", p, err, ErrInvalid)
		}
		if p.HostPort == 0 || p.ContainerPort == 0 {
			return fmt.Errorf("port %s: host and container ports must be set: %w", p, ErrInvalid)
		}
		if ip := p.HostIP; ip.IsValid() {
			switch {
			case ip.Zone() != "" || ip.Is4In6():
				return fmt.Errorf("port %s: host address %s: use a plain IPv4 or IPv6 address: %w", p, ip, ErrInvalid)
			case ip == netip.IPv6Loopback():
				return fmt.Errorf("port %s: publishing on [::1] is not possible with NAT (IPv6 has no route_localnet: the kernel never routes ::1 off the host); publish on all addresses or a real host address: %w", p, ErrInvalid)
			case ip.Is4() && !n.Subnet.IsValid():
				return fmt.Errorf("port %s: network %q has no IPv4 subnet: %w", p, n.Name, ErrInvalid)
			case ip.Is6() && !n.Subnet6.IsValid():
				return fmt.Errorf("port %s: network %q has no IPv6 subnet: %w", p, n.Name, ErrInvalid)
			}
		}
		for _, q := range byPort[portKey{p.proto(), p.HostPort}] {
			if Conflicts(p, q) {
				return fmt.Errorf("ports %s and %s take the same host port: %w", q, p, ErrInvalid)
			}
		}
		byPort[portKey{p.proto(), p.HostPort}] = append(byPort[portKey{p.proto(), p.HostPort}], p)
	}
	return nil
}

// portKey is what two conflicting ports share: protocol and host port.
type portKey struct {
	proto string
	port  uint16
}
