package sandnet

import (
	"context"

	"github.com/sandnet/sandnet/internal/dnsrun"

	"github.com/sandnet/sandnet/internal/state"
)

// The tests of this package look into the state dir, which internal/state
// owns, and dial from namespaces as internal/dnsrun does; these name those
// parts as the tests knew them.

var nsDial = dnsrun.Dial

type (
	portEntry = state.PortEntry
	portFile  = state.PortFile
)

const lastFreePort = state.LastFreePort

func (h *Host) endpointDir(network string) string      { return h.st.EndpointDir(network) }
func (h *Host) endpointPath(network, id string) string { return h.st.EndpointPath(network, id) }
func (h *Host) networkPath(name string) string         { return h.st.NetworkPath(name) }
func (h *Host) portPath(p PortMapping) string          { return h.st.PortPath(p) }
func (h *Host) nextPortPath(proto string) string       { return h.st.NextPortPath(proto) }

func (h *Host) readNetwork(name string) (*networkRecord, error) { return h.st.ReadNetwork(name) }

func (h *Host) readEndpoint(network, id string) (*endpointRecord, error) {
	return h.st.ReadEndpoint(network, id)
}

func (h *Host) listPorts(ctx context.Context) ([]portEntry, error) { return h.st.ListPorts(ctx) }

func (h *Host) releasePorts(ctx context.Context, ep *Endpoint, ports []PortMapping) error {
	return h.st.ReleasePorts(ctx, holderOf(ep), ports)
}

func (h *Host) portsHeld(ctx context.Context, ep *Endpoint, ports []PortMapping) ([]PortMapping, error) {
	return h.st.PortsHeld(ctx, holderOf(ep), ports)
}

func decodeRecord[T any](path string, b []byte, version func(*T) int) (*T, error) {
	return state.Decode(path, b, version)
}
