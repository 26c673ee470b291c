package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/sandnet/sandnet/nat"
)

// The lookups and collection a runtime adapter (the CNI plugin) needs: it
// knows an attachment only by (network, sandbox ID, interface name), from
// a process other than the one that attached it.

// LookupEndpoint returns the recorded endpoint of sandbox sandboxID's
// interface ifName ("" means eth0) on network, as Attach recorded it; also
// one whose attach has not finished (Check reports that). No record is
// ErrNotFound.
func (h *Host) LookupEndpoint(network, sandboxID, ifName string) (*Endpoint, error) {
	if err := errors.Join(checkName("network", network), checkName("sandbox", sandboxID)); err != nil {
		return nil, err
	}
	ep := &Endpoint{Network: network, SandboxID: sandboxID, IfName: ifName}
	rec, err := h.st.ReadEndpoint(network, endpointIDOf(ep))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("sandbox %q has no interface %q on network %q: %w", sandboxID, ep.IfName, network, ErrNotFound)
		}
		return nil, err
	}
	e := rec.Endpoint
	return &e, nil
}

// GCNetwork is GC for one network with a keep set: every endpoint of the
// network that keep rejects is torn down (ports, rules, DNS names,
// interfaces, lease and record), as are the ones GC would collect anyway;
// then leases no record holds are released. keep sees each endpoint as
// recorded. A network without a record is not an error. It takes the
// network's exclusive lock, so no attach to it is in flight meanwhile.
func (h *Host) GCNetwork(ctx context.Context, network string, keep func(*Endpoint) bool) (GCReport, error) {
	var rep GCReport
	if err := checkName("network", network); err != nil {
		return rep, err
	}
	if keep == nil {
		return rep, invalidf("gc of network %q: no keep set", network)
	}
	err := h.withNetworkExclusive(ctx, network, func(nrec *networkRecord) error { return h.gcNetwork(ctx, nrec, keep, &rep) })
	return rep, err
}

// Ready reports whether the Host can attach: its state directory takes a
// file and its firewall backend answers a query. It changes nothing.
func (h *Host) Ready(ctx context.Context) error {
	f, err := os.CreateTemp(h.dir, ".ready-*")
	if err != nil {
		return fmt.Errorf("state dir %s: %w", h.dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	probe := nat.Network{Name: "ready", Bridge: "sn-ready", Subnet: readyProbeSubnet}
	if _, err := h.fw.Check(ctx, probe, nil); err != nil {
		return fmt.Errorf("firewall backend in %s: %w", h.ns, err)
	}
	return nil
}

// readyProbeSubnet is the documentation range (TEST-NET-1) Ready asks the
// firewall about; no network of sandnet's uses it.
var readyProbeSubnet = netip.MustParsePrefix("192.0.2.0/24")
