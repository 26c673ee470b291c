package nat

import "net/netip"

// PortMapping publishes one container port on the host, as Docker's -p does.
type PortMapping struct {
	// HostIP restricts the published port to one host address; the zero
	// value publishes on every address of the host.
	HostIP netip.Addr `json:"hostIP,omitzero"`
	// HostPort is the port on the host.
	HostPort uint16 `json:"hostPort"`
	// ContainerPort is the port inside the sandbox.
	ContainerPort uint16 `json:"containerPort"`
	// Proto is "tcp" (default), "udp" or "sctp".
	Proto string `json:"proto"`
}

// NeedsLocalnet reports whether one of ports answers on 127.0.0.1
// (published there, or on every IPv4 address): the host's packets to it
// are DNATed out of the bridge, which the kernel allows only with the
// bridge's route_localnet on.
func NeedsLocalnet(ports []PortMapping) bool {
	for _, p := range ports {
		ip := p.HostIP
		if !ip.IsValid() || (ip.Is4() && (ip.IsUnspecified() || ip.IsLoopback())) {
			return true
		}
	}
	return false
}
