package sandnet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/sandnet/sandnet/netns"
)

// Repair puts back what Check finds missing for endpoint ep and its
// network, from the recorded state: bridge and gateway addresses, host
// settings, the network's rules, the veth pair with its addresses and
// routes, the lease, port-table entries, the endpoint's rules and the
// name server. Whatever is there is left alone, so nothing is duplicated.
// It returns what was missing before the repair; the error lists what is
// still missing after it (a sandbox namespace that is gone is GC's work).
// It holds the network's exclusive lock, so no attach runs meanwhile.
func (h *Host) Repair(ctx context.Context, ep *Endpoint) (CheckReport, error) {
	if ep == nil {
		return CheckReport{}, invalidf("repair: nil endpoint")
	}
	if err := checkName("network", ep.Network); err != nil {
		return CheckReport{}, err
	}
	release, err := h.st.LockNetworkExclusive(ctx, ep.Network)
	if err != nil {
		return CheckReport{}, err
	}
	defer release()
	nrec, rec, err := h.checkTarget(ep)
	if err != nil {
		return CheckReport{}, err
	}
	before := CheckReport{Network: nrec.Network.Name, Endpoint: rec.Endpoint.ID, Sandbox: rec.Endpoint.SandboxID}
	if err := h.checkNetwork(ctx, nrec, &before); err != nil {
		return before, err
	}
	netProblems := len(before.Problems)
	if err := h.checkEndpoint(ctx, nrec, rec, &before, nil); err != nil {
		return before, err
	}
	if before.OK() {
		return before, nil
	}
	var errs []error
	if netProblems > 0 {
		errs = append(errs, h.repairNetwork(ctx, nrec))
	}
	errs = append(errs, h.repairEndpoint(ctx, nrec, rec, before.Problems[netProblems:]))
	after, err := h.Check(ctx, &rec.Endpoint)
	errs = append(errs, err)
	if !after.OK() {
		errs = append(errs, stillMissing(after))
	}
	return before, errors.Join(errs...)
}

func stillMissing(r CheckReport) error {
	var ps []string
	for _, p := range r.Problems {
		ps = append(ps, p.String())
	}
	return fmt.Errorf("repairing sandbox %q on network %q: still wrong: %v", r.Sandbox, r.Network, ps)
}

// ReconcileReport says what Reconcile found missing and put back.
type ReconcileReport struct {
	// Repaired lists, per network (Endpoint "") and per endpoint, what was
	// missing before the repair.
	Repaired []CheckReport `json:"repaired,omitempty"`
	// Skipped lists endpoints left for GC, as "network/sandbox/interface: reason".
	Skipped []string `json:"skipped,omitempty"`
}

// Reconcile runs Repair for every network and endpoint of the host:
// first each network's own objects (bridge, addresses, host settings,
// rules), then its endpoints. After `iptables -F` or a firewall reload,
// one Reconcile restores every rule, once. Endpoints whose attach did not
// finish or whose namespace is gone are skipped: GC removes them.
func (h *Host) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	// Network-level objects of every network first: the shared chains and
	// their jumps come back before any endpoint's rule.
	each := func(fn func(context.Context, *networkRecord, *ReconcileReport) error) error {
		return h.eachNetwork(ctx, func(name string) error {
			return h.withNetworkExclusive(ctx, name, func(nrec *networkRecord) error { return fn(ctx, nrec, &rep) })
		})
	}
	err := each(h.reconcileNetwork)
	if ctx.Err() != nil {
		return rep, err
	}
	return rep, errors.Join(err, each(h.reconcileEndpoints))
}

// reconcileNetwork and reconcileEndpoints run with the network's exclusive
// lock held.
func (h *Host) reconcileNetwork(ctx context.Context, nrec *networkRecord, rep *ReconcileReport) error {
	nr := CheckReport{Network: nrec.Network.Name}
	if err := h.checkNetwork(ctx, nrec, &nr); err != nil {
		return err
	}
	if nr.OK() {
		return nil
	}
	rep.Repaired = append(rep.Repaired, nr)
	return h.repairNetwork(ctx, nrec)
}

func (h *Host) reconcileEndpoints(ctx context.Context, nrec *networkRecord, rep *ReconcileReport) error {
	name := nrec.Network.Name
	eps, err := h.st.Endpoints(name)
	errs := []error{err}
	sort.Slice(eps, func(i, j int) bool {
		return eps[i].Endpoint.SandboxID+eps[i].Endpoint.IfName < eps[j].Endpoint.SandboxID+eps[j].Endpoint.IfName
	})
	var live []*endpointRecord
	for _, r := range eps {
		ep := &r.Endpoint
		if reason := stale(r); reason != "" {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s/%s/%s: %s", name, ep.SandboxID, ep.IfName, reason))
			continue
		}
		live = append(live, r)
	}
	var view any
	if len(live) > 0 {
		drv, err := driverFor(nrec.Network.Driver)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		var liveEps []*Endpoint
		for _, r := range live {
			liveEps = append(liveEps, &r.Endpoint)
		}
		if view, err = drv.networkView(ctx, h, nrec, liveEps); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	for _, r := range live {
		er := CheckReport{Network: name, Endpoint: r.Endpoint.ID, Sandbox: r.Endpoint.SandboxID}
		if err := h.checkEndpoint(ctx, nrec, r, &er, view); err != nil {
			errs = append(errs, err)
			continue
		}
		if er.OK() {
			continue
		}
		rep.Repaired = append(rep.Repaired, er)
		errs = append(errs, h.repairEndpoint(ctx, nrec, r, er.Problems))
	}
	return errors.Join(errs...)
}

// repairNetwork puts back the network's own objects, through its driver;
// each is ensured, so what is there stays.
func (h *Host) repairNetwork(ctx context.Context, nrec *networkRecord) error {
	drv, err := driverFor(nrec.Network.Driver)
	if err != nil {
		return err
	}
	return drv.repairNetwork(ctx, h, nrec)
}

// repairEndpoint puts back what problems name for one endpoint.
func (h *Host) repairEndpoint(ctx context.Context, nrec *networkRecord, rec *endpointRecord, problems []Problem) error {
	n, ep := &nrec.Network, &rec.Endpoint
	has := func(objs ...Object) bool {
		return slices.ContainsFunc(problems, func(p Problem) bool { return p.Repairable && slices.Contains(objs, p.Object) })
	}
	if slices.ContainsFunc(problems, func(p Problem) bool { return !p.Repairable && p.Object == ObjSandbox }) {
		return fmt.Errorf("repairing sandbox %q on network %q: %w (run GC)", ep.SandboxID, n.Name, ErrNotFound)
	}
	var errs []error
	if has(ObjLease) {
		static, err := staticAddrs(n, ep.Addr(false), ep.Addr(true))
		if err == nil {
			_, err = h.ipam.Allocate(ctx, pools(n), leaseKey(ep), static...)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("repairing the lease of sandbox %q: %w", ep.SandboxID, err))
		}
	}
	if has(ObjPort) {
		errs = append(errs, h.st.ReclaimPorts(ctx, holderOf(ep), ep.Ports))
	}
	sb, err := netns.Open(ep.NetNS)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer sb.Close()
	if sb.Inode() != ep.NetNSInode {
		return errors.Join(append(errs, fmt.Errorf("repairing sandbox %q: %s is another namespace now: %w", ep.SandboxID, ep.NetNS, ErrNotFound))...)
	}
	if drv, err := driverFor(n.Driver); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, drv.repairEndpoint(ctx, h, nrec, ep, sb, has))
	}
	if has(ObjDNS) {
		errs = append(errs, h.dns.Ensure(ctx, dnsNetwork(n)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("repairing sandbox %q on network %q: %w", ep.SandboxID, n.Name, err)
	}
	return nil
}
