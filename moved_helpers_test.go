package sandnet

import (
	"context"
	"net/netip"
	"slices"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/dnsrun"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"

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

// MissingRules is what diag.HostRules reports: the firewall rules Check
// finds missing for ep and its network.
func (h *Host) MissingRules(ctx context.Context, ep *Endpoint) (rules []string, err error) {
	rep, err := h.Check(ctx, ep)
	rep.Problems = slices.DeleteFunc(rep.Problems, func(p Problem) bool { return p.Object != ObjRule })
	for _, p := range rep.Problems {
		rules = append(rules, p.Name)
	}
	return rules, err
}

// DNSHelperPID is the PID of the state dir's name-server helper, 0 if none runs.
func (h *Host) DNSHelperPID() int { return h.dns.HelperPID() }

// Firewall is the Host's firewall backend.
func (h *Host) Firewall() nat.Backend { return h.fw }

// claimPorts takes the host ports of ep in the port table, as publishing
// them does (publish.Publisher.Add), without the rules.
func (h *Host) claimPorts(ctx context.Context, ep *Endpoint, ports []PortMapping, validate func([]PortMapping) error) ([]PortMapping, error) {
	return h.st.ClaimPorts(ctx, holderOf(ep), ports, validate, recordPorts(h, ep))
}

func (h *Host) writeSandboxFile(ctx context.Context, tx *attachTx, path string, data []byte) error {
	return writeDNSFiles(ctx, h, tx.ep.ID, &tx.undo, &dnsFiles{data: data, paths: []string{path}})
}

func (h *Host) releaseDNSFile(ctx context.Context, path, id string) error {
	return releaseDNSFile(ctx, h, path, id)
}

// recordSource is the name-server runner's source as the tests knew it.
type recordSource struct{ st *stateStore }

func (s recordSource) Names(network string) (dns.Source, error) { return records(s.st).Names(network) }

// queryA asks the name server at server, from inside sb, for name's IPv4
// addresses, as Check does (dnsrun.CheckNames).
func queryA(ctx context.Context, sb *netns.NS, server netip.AddrPort, name string) ([]netip.Addr, error) {
	return dns.QueryA(ctx, dnsrun.Dial(sb), server, name, dnsrun.CheckTimeout)
}
