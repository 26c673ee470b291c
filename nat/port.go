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
