package sandnet

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/sandnet/sandnet/ipam"
)

// GCReport says what GC removed.
type GCReport struct {
	// Endpoints removed, as "network/sandbox/interface" with the reason.
	Endpoints []string `json:"endpoints,omitempty"`
	// Leases released that no endpoint record held.
	Leases []string `json:"leases,omitempty"`
	// Networks removed because they were created implicitly and are now empty.
	Networks []string `json:"networks,omitempty"`
	// Ports dropped from the port table whose endpoint has no record.
	Ports []string `json:"ports,omitempty"`
}

// GC removes what crashed processes and vanished namespaces left behind:
// endpoints whose sandbox namespace is gone, attaches that never finished
// (their host veth, rules, DNS names, lease and record), leases that no
// endpoint holds, implicitly created networks left with no endpoint, and
// port table entries of endpoints that have no record.
// It takes each network's exclusive lock, so no attach is in flight while
// it judges a record, and touches only objects sandnet's records name.
func (h *Host) GC(ctx context.Context) (GCReport, error) {
	var rep GCReport
	err := h.eachNetwork(ctx, func(name string) error {
		return h.withNetworkExclusive(ctx, name, func(nrec *networkRecord) error { return h.gcNetwork(ctx, nrec, nil, &rep) })
	})
	ports, perr := h.st.GCPorts(ctx)
	rep.Ports = ports
	return rep, errors.Join(err, perr)
}

// eachNetwork calls fn for every recorded network in name order, going on
// past errors and stopping when ctx ends; it returns every error joined.
func (h *Host) eachNetwork(ctx context.Context, fn func(name string) error) error {
	recs, err := h.st.Networks()
	if err != nil && len(recs) == 0 {
		return err
	}
	errs := []error{err}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Network.Name < recs[j].Network.Name })
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		errs = append(errs, fn(r.Network.Name))
	}
	return errors.Join(errs...)
}

// gcNetwork collects one network; the caller holds its exclusive lock. An
// endpoint goes when its record is stale or, with keep set, when keep
// rejects it.
func (h *Host) gcNetwork(ctx context.Context, nrec *networkRecord, keep func(*Endpoint) bool, rep *GCReport) error {
	name := nrec.Network.Name
	eps, err := h.st.Endpoints(name)
	errs := []error{err, h.st.RemoveEndpointTemps(name)}
	held := map[string]bool{}
	for _, r := range eps {
		ep := &r.Endpoint
		reason := stale(r)
		if reason == "" && keep != nil && !keep(ep) {
			reason = "not in the keep set"
		}
		if reason == "" {
			held[leaseKey(ep).String()] = true
			continue
		}
		if err := h.teardown(ctx, nrec, ep); err != nil {
			// Its record and lease stay for the next GC (see teardown).
			held[leaseKey(ep).String()] = true
			errs = append(errs, fmt.Errorf("collecting endpoint %s of sandbox %q: %w", ep.ID, ep.SandboxID, err))
			continue
		}
		rep.Endpoints = append(rep.Endpoints, fmt.Sprintf("%s/%s/%s: %s", name, ep.SandboxID, ep.IfName, reason))
	}
	released, err := h.ipam.ReleaseUnheld(ctx, name, func(k ipam.Key) bool { return held[k.String()] })
	errs = append(errs, err)
	for _, l := range released {
		rep.Leases = append(rep.Leases, fmt.Sprintf("%s %v", l.Key, l.Addrs))
	}
	if len(held) == 0 && nrec.Implicit && errors.Join(errs...) == nil {
		if err := h.removeNetworkLocked(ctx, name, true); err != nil {
			errs = append(errs, err)
		} else {
			rep.Networks = append(rep.Networks, name)
		}
	}
	return errors.Join(errs...)
}
