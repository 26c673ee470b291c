package sandnet

import (
	"os"

	"github.com/sandnet/sandnet/nat"
)

// ParsePort parses a published port in Docker's -p syntax ("8080:80",
// "127.0.0.1:8080:80/udp", "8000-8010:8000-8010", "[2001:db8::1]:8080:80");
// see nat.ParsePort.
func ParsePort(spec string) ([]PortMapping, error) { return nat.ParsePort(spec) }

// PortConflictError says which sandbox holds a host port; errors.Is(err,
// ErrInUse) is true for it.
type PortConflictError = nat.PortConflictError

func holderOf(ep *Endpoint) nat.Holder {
	return nat.Holder{Network: ep.Network, Sandbox: ep.SandboxID, Endpoint: ep.ID}
}

// recordPorts returns the function that lists claimed ports in ep's record
// (as attaching) before the port table does, so a Detach or GC after a
// crash knows which entries to drop.
func recordPorts(h *Host, ep *Endpoint) func([]PortMapping) error {
	return func(out []PortMapping) error {
		rec := endpointRecord{Version: stateVersion, State: stateAttaching, PID: os.Getpid(), Endpoint: *ep}
		rec.Endpoint.Ports = out
		return h.st.WriteEndpoint(ep.Network, ep.ID, &rec)
	}
}
