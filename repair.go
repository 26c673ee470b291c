package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
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
	release, err := h.lockNetworkExclusive(ctx, ep.Network)
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
	eps, err := h.listEndpointRecords(name)
	errs := []error{err}
	sort.Slice(eps, func(i, j int) bool {
		return eps[i].Endpoint.SandboxID+eps[i].Endpoint.IfName < eps[j].Endpoint.SandboxID+eps[j].Endpoint.IfName
	})
	var live []*endpointRecord
	var nat4 []nat.Endpoint
	for _, r := range eps {
		ep := &r.Endpoint
		if reason := r.stale(); reason != "" {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s/%s/%s: %s", name, ep.SandboxID, ep.IfName, reason))
			continue
		}
		live = append(live, r)
		nat4 = append(nat4, natEndpoint(ep, ep.Ports))
	}
	missing := []nat.Rule{}
	if nrec.Network.Driver == DriverBridge && len(nat4) > 0 {
		m, err := h.fw.Check(ctx, natNetwork(&nrec.Network), nat4)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("checking firewall rules of network %q: %w", name, err))...)
		}
		missing = append(missing, m...)
	}
	for _, r := range live {
		er := CheckReport{Network: name, Endpoint: r.Endpoint.ID, Sandbox: r.Endpoint.SandboxID}
		if err := h.checkEndpoint(ctx, nrec, r, &er, missing); err != nil {
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

// repairNetwork puts back the network's bridge, gateway addresses, host
// settings and rules; each is ensured, so what is there stays.
func (h *Host) repairNetwork(ctx context.Context, nrec *networkRecord) error {
	n := &nrec.Network
	if n.Driver != DriverBridge {
		return nil
	}
	if _, _, err := bridge.Ensure(ctx, h.ns, bridge.Config{Name: n.Bridge, MTU: n.MTU, Addrs: gatewayPrefixes(n)}); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	if err := h.ensureQuerier(ctx, nrec); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	rec := *nrec // ensureNetworkRules notes host changes; the record stays as it is
	if err := h.ensureNetworkRules(ctx, &rec); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	return nil
}

// repairEndpoint puts back what problems name for one endpoint.
func (h *Host) repairEndpoint(ctx context.Context, nrec *networkRecord, rec *endpointRecord, problems []Problem) error {
	n, ep := &nrec.Network, &rec.Endpoint
	has := func(objs ...string) bool {
		return slices.ContainsFunc(problems, func(p Problem) bool { return p.Repairable && slices.Contains(objs, p.Object) })
	}
	if slices.ContainsFunc(problems, func(p Problem) bool { return !p.Repairable && (p.Object == ObjSandbox || p.Object == ObjRecord) }) {
		return fmt.Errorf("repairing sandbox %q on network %q: %w (run GC)", ep.SandboxID, n.Name, ErrNotFound)
	}
	var errs []error
	if has(ObjLease) {
		var static []netip.Addr
		if n.Subnet.IsValid() {
			static = append(static, ep.Addr(false))
		}
		if n.Subnet6.IsValid() {
			static = append(static, ep.Addr(true))
		}
		if _, err := h.ipam.Allocate(ctx, pools(n), leaseKey(ep), static...); err != nil {
			errs = append(errs, fmt.Errorf("repairing the lease of sandbox %q: %w", ep.SandboxID, err))
		}
	}
	if has(ObjPort) {
		errs = append(errs, h.reclaimPorts(ctx, ep))
	}
	sb, err := netns.Open(ep.NetNS)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer sb.Close()
	if sb.Inode() != ep.NetNSInode {
		return errors.Join(append(errs, fmt.Errorf("repairing sandbox %q: %s is another namespace now: %w", ep.SandboxID, ep.NetNS, ErrNotFound))...)
	}
	relinked := false
	if n.Driver == DriverBridge && has(ObjHostVeth, ObjSandboxIf, ObjAddress, ObjRoute) {
		var err error
		relinked, err = h.repairLinks(ctx, n, ep, sb)
		errs = append(errs, err)
	}
	if n.Driver == DriverBridge && (relinked || has(ObjRule)) {
		errs = append(errs, h.repairEndpointRules(ctx, n, ep, relinked))
	}
	if relinked || has(ObjHostVeth) {
		// A new pair, or a port that left the bridge and came back, has
		// none of the flags and entries it had.
		_, err := h.ensureNeighbors(ctx, n, ep, sb, nil)
		errs = append(errs, err)
	} else if neighborProblems(problems) {
		errs = append(errs, h.repairNeighbors(ctx, n, ep, sb, problems))
	}
	if has(ObjDNS) {
		errs = append(errs, h.ensureDNSServer(ctx, nrec, sb))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("repairing sandbox %q on network %q: %w", ep.SandboxID, n.Name, err)
	}
	return nil
}

// repairEndpointRules sets the bridge port flags again after a new veth,
// and adds the endpoint's published-port rules that are missing.
func (h *Host) repairEndpointRules(ctx context.Context, n *Network, ep *Endpoint, relinked bool) error {
	if relinked {
		if brNetfilter(h) {
			if err := h.setPort(ctx, ep.HostIfName, "hairpin", (*netlink.Handle).LinkSetHairpin); err != nil {
				return err
			}
		} else if n.NoICC {
			if err := h.setPort(ctx, ep.HostIfName, "isolated", (*netlink.Handle).LinkSetIsolated); err != nil {
				return err
			}
		}
	}
	if len(ep.Ports) == 0 {
		return nil
	}
	return h.fw.AddEndpoint(ctx, natNetwork(n), natEndpoint(ep, ep.Ports))
}

// repairLinks puts back the veth pair (both ends, if either is gone), then
// what is missing on each end: up, on the bridge, addresses, routes. It
// reports whether it made a new pair.
func (h *Host) repairLinks(ctx context.Context, n *Network, ep *Endpoint, sb *netns.NS) (bool, error) {
	nl, err := h.ns.Netlink()
	if err != nil {
		return false, err
	}
	snl, err := sb.Netlink()
	if err != nil {
		return false, err
	}
	br, err := nl.LinkByName(n.Bridge)
	if err != nil {
		return false, fmt.Errorf("finding bridge %s in %s: %w", n.Bridge, h.ns, err)
	}
	hostLink, herr := nl.LinkByName(ep.HostIfName)
	sbLink, serr := snl.LinkByName(ep.IfName)
	relinked := false
	if herr != nil || serr != nil {
		// Half a pair cannot be mended: remove what is left, make a new one.
		if err := veth.Delete(ctx, h.ns, ep.HostIfName); err != nil {
			return false, err
		}
		if serr == nil {
			if _, ok := sbLink.(*netlink.Veth); !ok {
				return false, fmt.Errorf("sandbox %s has a %s called %s, not sandnet's veth: %w", sb, sbLink.Type(), ep.IfName, ErrExists)
			}
			explain.Say(ctx, "%s", sb.Shell("ip link del "+ep.IfName))
			if err := snl.LinkDel(sbLink); err != nil && !errors.Is(err, unix.ENODEV) {
				return false, fmt.Errorf("deleting %s in %s: %w", ep.IfName, sb, err)
			}
		}
		mac, _ := net.ParseMAC(ep.MAC)
		if _, err := veth.Create(ctx, h.ns, veth.Pair{
			Name: ep.HostIfName, PeerName: ep.IfName, PeerNS: sb, MTU: ep.MTU, PeerMAC: mac,
			Master: br.Attrs().Index, MasterName: n.Bridge, Up: true,
		}); err != nil {
			return false, err
		}
		relinked = true
		if hostLink, err = nl.LinkByName(ep.HostIfName); err != nil {
			return true, err
		}
		if sbLink, err = snl.LinkByName(ep.IfName); err != nil {
			return true, err
		}
		if err := loUp(ctx, sb, snl); err != nil {
			return true, err
		}
	}
	if hostLink.Attrs().MasterIndex != br.Attrs().Index {
		explain.Say(ctx, "%s", h.ns.Shell("ip link set "+ep.HostIfName+" master "+n.Bridge))
		if err := nl.LinkSetMasterByIndex(hostLink, br.Attrs().Index); err != nil {
			return relinked, fmt.Errorf("attaching %s to bridge %s: %w", ep.HostIfName, n.Bridge, err)
		}
	}
	if hostLink.Attrs().Flags&net.FlagUp == 0 {
		explain.Say(ctx, "%s", h.ns.Shell("ip link set "+ep.HostIfName+" up"))
		if err := nl.LinkSetUp(hostLink); err != nil {
			return relinked, fmt.Errorf("bringing %s up: %w", ep.HostIfName, err)
		}
	}
	have, err := prefixesOf(snl, sbLink)
	if err != nil {
		return relinked, err
	}
	for _, p := range ep.Addresses {
		if slices.Contains(have, p) {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(p)}
		extra := ""
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
			extra = " nodad"
		}
		explain.Say(ctx, "%s", sb.Shell(fmt.Sprintf("ip addr add %s dev %s%s", p, ep.IfName, extra)))
		if err := snl.AddrAdd(sbLink, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return relinked, fmt.Errorf("adding %s to %s in %s: %w", p, ep.IfName, sb, err)
		}
	}
	if sbLink.Attrs().Flags&net.FlagUp == 0 || relinked {
		explain.Say(ctx, "%s", sb.Shell("ip link set "+ep.IfName+" up"))
		if err := snl.LinkSetUp(sbLink); err != nil {
			return relinked, fmt.Errorf("bringing %s up in %s: %w", ep.IfName, sb, err)
		}
	}
	for _, r := range ep.Routes {
		ok, err := hasRoute(snl, sbLink, r)
		if err != nil {
			return relinked, err
		}
		if ok {
			continue
		}
		explain.Say(ctx, "%s", sb.Shell(fmt.Sprintf("ip %sroute add default via %s dev %s", family(r.Via), r.Via, ep.IfName)))
		route := &netlink.Route{LinkIndex: sbLink.Attrs().Index, Dst: ipNet(r.Dst), Gw: r.Via.AsSlice()}
		if err := snl.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
			return relinked, fmt.Errorf("adding route %s in %s: %w", routeString(r), sb, err)
		}
	}
	return relinked, nil
}
