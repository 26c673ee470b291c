package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/internal/publish"
	"github.com/sandnet/sandnet/ipam"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

// DriverBridge, the default (as in Docker), connects each sandbox with a veth
// pair to a bridge in the host namespace that carries the gateway address,
// with NAT, DNS and published ports.
const DriverBridge Driver = "bridge"

// bridgeDriver is Docker's default: a veth pair from the sandbox to a bridge
// in the host namespace that carries the gateway address. The bridge's
// firewall steps (masquerade, forwarding, isolation and published ports) are
// done by the Host's nat.Backend, with the host settings they need
// (forwarding, route_localnet on the bridge, bridge port flags).
type bridgeDriver struct{}

func (bridgeDriver) traits() traits { return traits{ipam: true, nameServer: true, veth: true} }

func (bridgeDriver) setFields(n *Network) string {
	switch {
	case n.ClusterCIDR.IsValid() && n.NoNeighborProxy:
		return "clusterCIDR and noNeighborProxy"
	case n.ClusterCIDR.IsValid():
		return "clusterCIDR"
	case n.NoNeighborProxy:
		return "noNeighborProxy"
	}
	return ""
}

func (bridgeDriver) normalize(n *Network) error {
	if n.Bridge == "" {
		n.Bridge = ifname.Derive("sn-", n.Name)
	}
	if err := checkBridgeName(n); err != nil {
		return err
	}
	return checkClusterCIDR(n)
}

func (bridgeDriver) settle(*Network, *Network) {}

// hostDefaults picks the MTU of the host's uplink and, for a network that
// names no subnet, a free /24 from 10.89.0.0/16, as netavark does; a
// subnet given is checked against the host's addresses and routes.
func (bridgeDriver) hostDefaults(h *Host, n *Network) error {
	if n.MTU == 0 {
		n.MTU = iface.UplinkMTU(h.ns)
	}
	if n.Subnet.IsValid() || n.Subnet6.IsValid() {
		return checkHostAddrs(h, n)
	}
	taken, err := usedPrefixes(h)
	if err != nil {
		return err
	}
	if p, ok := ipam.FreeSubnet(netip.MustParsePrefix("10.89.0.0/16"), 24, taken); ok {
		n.Subnet, n.Gateway = p, p.Addr().Next()
		return nil
	}
	return fmt.Errorf("network %q: no free /24 left in 10.89.0.0/16, give a subnet: %w", n.Name, ErrExhausted)
}

// usedPrefixes lists subnets of recorded networks and routes of the host namespace.
func usedPrefixes(h *Host) ([]netip.Prefix, error) {
	recs, err := h.st.Networks()
	if err != nil {
		return nil, err
	}
	var used []netip.Prefix
	for _, r := range recs {
		used = append(used, r.Network.Subnet)
	}
	routes, err := iface.AllRoutes(h.ns, netlink.FAMILY_V4)
	for _, r := range routes {
		used = append(used, r.Prefix)
	}
	return used, err
}

func (bridgeDriver) createNetwork(ctx context.Context, h *Host, rec *networkRecord) (undoStack, error) {
	var undo undoStack
	n := &rec.Network
	// Multicast snooping only where the bridge will be the querier: with
	// no querier it floods all the same (see bridge.Config).
	_, created, err := bridge.Ensure(ctx, h.ns, bridge.Config{Name: n.Bridge, MTU: n.MTU, Addrs: gatewayPrefixes(n), NoMulticastSnooping: !querierNetwork(n)})
	if err != nil {
		return nil, err
	}
	if created {
		rec.OwnsBridge = true
		undo.push(func(ctx context.Context) error { return bridge.Delete(ctx, h.ns, n.Bridge) })
	}
	if err := ensureQuerier(ctx, h, rec); err != nil {
		return nil, errors.Join(err, undo.run(ctx))
	}
	if err := ensureNetworkRules(ctx, h, rec); err != nil {
		return nil, errors.Join(err, undo.run(ctx))
	}
	undo.push(func(ctx context.Context) error { return h.fw.RemoveNetwork(ctx, natNetwork(n)) })
	return undo, nil
}

func (bridgeDriver) removeNetwork(ctx context.Context, h *Host, rec *networkRecord) error {
	err := h.fw.RemoveNetwork(ctx, natNetwork(&rec.Network))
	if rec.OwnsBridge {
		err = errors.Join(err, bridge.Delete(ctx, h.ns, rec.Network.Bridge))
	}
	return err
}

func (bridgeDriver) attach(ctx context.Context, tx *attachTx) error {
	if err := tx.allocate(ctx); err != nil {
		return err
	}
	var published func() error
	if err := tx.step(ctx, StepPorts, func() error {
		published = tx.publishBeside(ctx)
		return nil
	}); err != nil {
		return err
	}
	err := tx.dnsBeside(ctx, func() error {
		if err := tx.vethStep(ctx); err != nil {
			return err
		}
		// The port's flags before the sandbox has an address: from its
		// first packet, it is isolated as the network says.
		if err := tx.step(ctx, StepLink, func() error { return setPortFlags(ctx, tx.h, tx.net, tx.links.port) }); err != nil {
			return err
		}
		if err := tx.configureSandbox(ctx, !tx.net.Network.NoNeighborProxy); err != nil {
			return err
		}
		return answerNeighbors(ctx, tx)
	})
	if perr := published(); perr != nil && err == nil {
		err = perr
	}
	return err
}

// publishBeside starts publishing the endpoint's ports (publish.Publisher.
// Add: host ports claimed in the Host's port table, conflicts are
// *nat.PortConflictError, then the firewall's rules) beside the link and
// DNS steps: it needs the endpoint's addresses, not its interface. The
// function returned waits for it and adds its undo to the transaction's;
// on failure nothing of it is left behind (see beside).
func (tx *attachTx) publishBeside(ctx context.Context) (wait func() error) {
	h, rec, ports := tx.h, tx.net, tx.opts.Ports
	if len(ports) == 0 {
		return func() error { return nil }
	}
	ep := *tx.ep // what it reads, as it is now: the other steps go on changing tx.ep
	var claimed []PortMapping
	work := func() (err error) {
		n := &rec.Network
		claimed, err = publisher(h).Add(ctx, natNetwork(n), natEndpoint(&ep, ports), recordPorts(h, &ep),
			func() bool { return localnetWanted(h, n, ep.ID, nil) })
		return err
	}
	finish := func(err error) error {
		if err != nil {
			return tx.fail(StepPorts, err)
		}
		tx.ep.Ports = claimed
		tx.undo.push(func(ctx context.Context) error { return removeEndpointRules(ctx, h, rec, tx.ep) })
		return nil
	}
	return tx.beside(ctx, true, work, finish)
}

func (bridgeDriver) detach(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint) error {
	hostIf := ep.HostIfName
	if hostIf == "" { // an attach that died before recording it: the name is derived
		hostIf = hostVethName(ep.ID)
	}
	// Everything but the veth: rules, DNS files, the bridge's neighbour
	// entries.
	others := func() error {
		return errors.Join(
			removeEndpointRules(ctx, h, rec, ep),
			h.teardownDNS(ctx, rec, ep),
			forgetNeighbors(ctx, h, &rec.Network, ep),
		)
	}
	if sandboxGoing(ctx) {
		// The namespace's deletion removes the pair; a leftover is replaced
		// by the next attach of this endpoint (see vethStep).
		err := others()
		explain.Say(ctx, "# %s: left to the kernel, which removes it with the sandbox namespace", hostIf)
		return err
	}
	if explain.Enabled(ctx) { // one step after the other, as the explanation reads
		err := others()
		return errors.Join(err, h.removeVeth(ctx, hostIf))
	}
	// The veth goes meanwhile. The lease is released after both (by the
	// caller), so the address is not handed out while the old interface
	// still has it.
	vethErr := make(chan error, 1)
	go func() { vethErr <- h.removeVeth(ctx, hostIf) }()
	err := others()
	return errors.Join(err, <-vethErr)
}

// checkNetwork verifies the bridge, its gateway addresses, the host
// settings and the network's firewall rules.
func (bridgeDriver) checkNetwork(ctx context.Context, h *Host, nrec *networkRecord, rep *CheckReport) error {
	n := &nrec.Network
	lacks, err := bridge.CheckDevice(h.ns, n.Bridge, gatewayPrefixes(n))
	for _, l := range lacks {
		rep.Problems = append(rep.Problems, Problem{Object: ObjBridge, Name: l.Name, Detail: l.Detail, Repairable: !l.Foreign})
	}
	if err != nil {
		return err
	}
	if err := checkQuerier(h, nrec, rep); err != nil {
		return err
	}
	for _, key := range nat.ForwardingKeys(natNetwork(n)) {
		if v, err := h.ns.ReadSysctl(key); err == nil && v != "1" {
			rep.add(ObjBridge, key, "is %s, want 1", v)
		}
	}
	if v, err := h.ns.ReadSysctl(bridge.LocalnetKey(n.Bridge)); err == nil {
		switch want := localnetWanted(h, n, "", nil); {
		case want && v != "1":
			rep.add(ObjBridge, bridge.LocalnetKey(n.Bridge), "is %s, want 1 (a port is published on 127.0.0.1)", v)
		case !want && v != "0":
			rep.add(ObjBridge, bridge.LocalnetKey(n.Bridge), "is %s, want 0 (no port published on 127.0.0.1 needs it)", v)
		}
	}
	missing, err := h.fw.Check(ctx, natNetwork(n), nil)
	if err != nil {
		return fmt.Errorf("checking firewall rules of network %q: %w", n.Name, err)
	}
	for _, r := range missing {
		rep.add(ObjRule, r.Command(), "missing from %s", h.ns)
	}
	return nil
}

// bridgeView is what the bridge driver reads of a network once to check
// many of its endpoints: the firewall rules missing, the port flags wanted
// and the bridge's tables (nil if the bridge is gone, or nothing needs them).
type bridgeView struct {
	missing []nat.Rule
	flags   []bridge.PortFlag
	br      *bridge.View
}

func (bridgeDriver) networkView(ctx context.Context, h *Host, rec *networkRecord, eps []*Endpoint) (any, error) {
	n := &rec.Network
	var nes []nat.Endpoint
	for _, ep := range eps {
		nes = append(nes, natEndpoint(ep, ep.Ports))
	}
	missing, err := h.fw.Check(ctx, natNetwork(n), nes)
	if err != nil {
		return nil, fmt.Errorf("checking firewall rules of network %q: %w", n.Name, err)
	}
	v := &bridgeView{missing: missing, flags: bridge.WantedFlags(h.ns, n.NoICC)}
	if !n.NoNeighborProxy || len(v.flags) > 0 {
		nl, err := h.ns.Netlink()
		if err != nil {
			return nil, err
		}
		v.br, err = bridge.ReadView(h.ns, nl, n.Bridge)
		if errors.Is(err, ErrNotFound) {
			v.br, err = nil, nil // checkNetwork says so
		}
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

// checkEndpoint verifies the host end of the veth pair (present, up, a port
// of the bridge, with its flags), the endpoint's firewall rules and the
// entries that let the bridge answer address resolution for it.
func (d bridgeDriver) checkEndpoint(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint, sb *netns.NS, rep *CheckReport, view any) (bool, error) {
	n := &rec.Network
	v, _ := view.(*bridgeView)
	if v == nil {
		x, err := d.networkView(ctx, h, rec, []*Endpoint{ep})
		if err != nil {
			return false, err
		}
		v = x.(*bridgeView)
	}
	nl, err := h.ns.Netlink()
	if err != nil {
		return false, err
	}
	lacks, broken := bridge.CheckPort(h.ns, nl, v.br, n.Bridge, ep.HostIfName, v.flags)
	for _, l := range lacks {
		rep.add(ObjHostVeth, l.Name, "%s", l.Detail)
	}
	linksOK := !broken
	mine := nat.EndpointRules(natNetwork(n), natEndpoint(ep, ep.Ports))
	for _, r := range v.missing {
		if slices.ContainsFunc(mine, func(m nat.Rule) bool { return m.Comment == r.Comment && m.Family == r.Family }) {
			rep.add(ObjRule, r.Command(), "missing from %s", h.ns)
		}
	}
	return linksOK, checkNeighbors(rec, ep, sb, v.br, rep)
}

// repairNetwork puts back the bridge, its gateway addresses, the host
// settings and the rules; each is ensured, so what is there stays.
func (bridgeDriver) repairNetwork(ctx context.Context, h *Host, nrec *networkRecord) error {
	n := &nrec.Network
	if _, _, err := bridge.Ensure(ctx, h.ns, bridge.Config{Name: n.Bridge, MTU: n.MTU, Addrs: gatewayPrefixes(n)}); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	if err := ensureQuerier(ctx, h, nrec); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	rec := *nrec // ensureNetworkRules notes host changes; the record stays as it is
	if err := ensureNetworkRules(ctx, h, &rec); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	if n.Subnet.IsValid() {
		if err := publisher(h).SetLocalnet(ctx, natNetwork(n), localnetWanted(h, n, "", nil)); err != nil {
			return fmt.Errorf("repairing network %q: %w", n.Name, err)
		}
	}
	return nil
}

// repairEndpoint puts back the veth pair with what each end needs, then
// the bridge port flags (on a new pair, or any that is off), the
// published-port rules and the entries that answer address resolution.
func (bridgeDriver) repairEndpoint(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint, sb *netns.NS, has func(...Object) bool) error {
	n := &rec.Network
	var errs []error
	relinked := false
	if has(ObjHostVeth, ObjSandboxIf, ObjAddress, ObjRoute) {
		var err error
		relinked, err = repairLinks(ctx, h, n, ep, sb)
		errs = append(errs, err)
	}
	if relinked || has(ObjHostVeth) {
		errs = append(errs, bridge.SetPortFlags(ctx, h.ns, ep.HostIfName, bridge.WantedFlags(h.ns, n.NoICC)))
	}
	if (relinked || has(ObjRule)) && len(ep.Ports) > 0 {
		errs = append(errs, h.fw.AddEndpoint(ctx, natNetwork(n), natEndpoint(ep, ep.Ports)))
	}
	// A new pair, or a port that left the bridge and came back, has none
	// of its flags and entries.
	errs = append(errs, repairNeighbors(ctx, h, rec, ep, sb, has, relinked))
	return errors.Join(errs...)
}

// repairLinks puts back the veth pair (both ends, if either is gone), then
// what is missing on each end: up, on the bridge, addresses, routes
// (bridge.MendVethPort). It reports whether it made a new pair.
func repairLinks(ctx context.Context, h *Host, n *Network, ep *Endpoint, sb *netns.NS) (bool, error) {
	mac, _ := net.ParseMAC(ep.MAC)
	return bridge.MendVethPort(ctx, h.ns, bridge.VethPort{Bridge: n.Bridge, Name: ep.HostIfName, Sandbox: sb, IfName: ep.IfName}, func() error {
		_, _, _, err := createVeth(ctx, h, n, ep, sb, mac, nil)
		return err
	}, iface.Setup{Addrs: ep.Addresses, Routes: ep.Routes, Quiet: !n.NoNeighborProxy})
}

func natNetwork(n *Network) nat.Network {
	return nat.Network{Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet, Subnet6: n.Subnet6, Gateway: n.Gateway, Gateway6: n.Gateway6,
		Internal: n.Internal, NoICC: n.NoICC, Routed: n.Routed, ClusterCIDR: n.ClusterCIDR}
}

func natEndpoint(ep *Endpoint, ports []PortMapping) nat.Endpoint {
	return nat.Endpoint{ID: ep.ID, Sandbox: ep.SandboxID, Addr: ep.Addr(false), Addr6: ep.Addr(true), Ports: ports}
}

// localnetWanted reports whether an endpoint of network n other than skip
// (and, if extra is set, the endpoint being attached) publishes a port that
// answers on 127.0.0.1 (nat.NeedsLocalnet): route_localnet is on only
// while one does (bridge.LocalnetKey), and while it is on, the input
// chain's localnet guard drops what the sandboxes send to 127.0.0.0/8;
// off, a flushed firewall leaves the host's 127.0.0.1 services out of
// their reach all the same.
func localnetWanted(h *Host, n *Network, skip string, extra []PortMapping) bool {
	if !n.Subnet.IsValid() {
		return false
	}
	return nat.NeedsLocalnet(extra) || h.st.AnyEndpoint(n.Name, func(e *endpointRecord) bool {
		return e.Endpoint.ID != skip && nat.NeedsLocalnet(e.Endpoint.Ports)
	})
}

// publisher publishes the ports of the Host's bridge networks
// (internal/publish), on its port table and firewall.
func publisher(h *Host) publish.Publisher { return publish.Publisher{NS: h.ns, FW: h.fw, Table: h.st} }

// ensureNetworkRules prepares the host for a bridge network (forwarding)
// and installs its rules (nat.Install). A host-wide setting
// changed is recorded in rec.HostChanges, never reverted.
func ensureNetworkRules(ctx context.Context, h *Host, rec *networkRecord) error {
	n := &rec.Network
	changed, err := nat.Install(ctx, h.ns, h.fw, natNetwork(n))
	for _, key := range changed {
		rec.HostChanges = append(rec.HostChanges, key+"=1")
		h.log.Info("changed a host setting", "setting", key+"=1", "network", n.Name)
	}
	return err
}

// setPortFlags sets the endpoint's bridge port flags on port, its host
// end as the link step made it (bridge.WantedFlags: isolation, no
// hairpin...).
func setPortFlags(ctx context.Context, h *Host, rec *networkRecord, port netlink.Link) error {
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	return bridge.SetPortFlagsLink(ctx, h.ns, nl, port, bridge.WantedFlags(h.ns, rec.Network.NoICC))
}

// removeEndpointRules removes the endpoint's published ports, if it has
// any. Its record lists them from the moment they are claimed, also when an
// attach died half-way.
func removeEndpointRules(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint) error {
	n := &rec.Network
	return publisher(h).Remove(ctx, natNetwork(n), natEndpoint(ep, ep.Ports), func() bool { return localnetWanted(h, n, ep.ID, nil) })
}

// checkHostAddrs refuses a bridge network whose subnet holds an address
// the host namespace already has on another link (its gateway, or a
// sandbox, would take the host's own address, e.g. its LAN address), and
// warns when the subnet overlaps a route of the host's: its sandboxes then
// shadow part of what that route reaches.
func checkHostAddrs(h *Host, n *Network) error {
	// Other networks' bridges are checkOverlap's (a conflict, ErrExists).
	ours := map[string]bool{n.Bridge: true}
	recs, err := h.st.Networks()
	if err != nil {
		return err
	}
	for _, r := range recs {
		ours[r.Network.Bridge] = true
	}
	addr, routes, err := iface.Overlaps(h.ns, []netip.Prefix{n.Subnet, n.Subnet6}, func(link string) bool { return ours[link] })
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	if addr != nil {
		return invalidf("network %q: subnet %s holds %s, an address the host already has on %s (the gateway or a sandbox would take the host's own address)", n.Name, addr.Want, addr.Have.Prefix.Addr(), addr.Have.Link)
	}
	for _, r := range routes {
		h.log.Warn("the network's subnet overlaps a route of the host's: its sandboxes shadow part of what that route reaches",
			"network", n.Name, "subnet", r.Want, "route", r.Have.Prefix, "dev", r.Have.Link)
	}
	return nil
}

// A bridge network answers the address resolution it can answer itself,
// instead of flooding it to every port (unless Network.NoNeighborProxy): a
// thousand copies of each ARP request fill a CPU's backlog and the answer
// is lost. Per endpoint: a permanent entry in the sandbox for each gateway
// (only on a bridge sandnet made, whose MAC it sets; an adopted bridge's
// MAC follows its ports), and bridge.Answer's port flag, FDB entry and
// bridge-device entries for its addresses; and no router solicitations
// from its sandbox (iface.Setup.Quiet). On an IPv6 network whose bridge sandnet
// made, the bridge is the multicast querier, so neighbour solicitations go
// only where they are asked for (bridge.SetMulticastQuerier). An entry the
// kernel flushes brings back only the flooding, for that sandbox: Check
// reports it, Repair puts it back. README.md's "A thousand sandboxes"
// explains it at length.

// answerNeighbors is the attach step after the sandbox's interface is
// configured: the entries, on the links attach made, undone on failure.
func answerNeighbors(ctx context.Context, tx *attachTx) error {
	n, ep := &tx.net.Network, tx.ep
	if n.NoNeighborProxy {
		return nil
	}
	return tx.step(ctx, StepConfigure, func() error {
		if ep.MAC == "" { // no MAC of sandnet's (IPv6 only): the kernel's
			ep.MAC = tx.links.sandbox.MAC().String()
		}
		tx.undo.push(func(ctx context.Context) error { return forgetNeighbors(ctx, tx.h, n, ep) })
		return setNeighbors(ctx, tx.h, tx.net, ep, tx.links)
	})
}

// setNeighbors sets the endpoint's entries on links l; each replaces what
// is there.
func setNeighbors(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint, l txLinks) error {
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	return bridge.AnswerSandbox(ctx, h.ns, nl, l.bridge, l.port, l.sandbox, addrsOf(ep), gatewayEntries(rec, ep))
}

// gatewayEntries are the gateways the endpoint's sandbox has a permanent
// entry for: those of its address families, on a bridge sandnet made.
func gatewayEntries(rec *networkRecord, ep *Endpoint) []netip.Addr {
	var gws []netip.Addr
	for _, gw := range []netip.Addr{rec.Network.Gateway, rec.Network.Gateway6} {
		if rec.OwnsBridge && gw.IsValid() && ep.hasFamily(gw.Is6()) {
			gws = append(gws, gw)
		}
	}
	return gws
}

// forgetNeighbors removes the endpoint's entries from the bridge device
// (the rest goes with its veth). It runs while the endpoint holds its
// addresses' lease (teardown releases it after), so the entries are its own.
func forgetNeighbors(ctx context.Context, h *Host, n *Network, ep *Endpoint) error {
	if n.NoNeighborProxy {
		return nil
	}
	return bridge.Forget(ctx, h.ns, n.Bridge, addrsOf(ep))
}

// checkNeighbors adds to rep what is missing or wrong of the endpoint's
// entries, against br (the bridge's view; nil: the bridge is gone, which
// checkNetwork reports) and sb (nil: the sandbox is, which Check reports).
func checkNeighbors(rec *networkRecord, ep *Endpoint, sb *netns.NS, br *bridge.View, rep *CheckReport) error {
	if rec.Network.NoNeighborProxy || br == nil {
		return nil
	}
	mac, _ := net.ParseMAC(ep.MAC)
	for _, l := range br.CheckAnswer(ep.HostIfName, mac, addrsOf(ep)) {
		rep.add(ObjNeighbor, l.Name, "%s", l.Detail)
	}
	lacks, err := br.CheckGateways(sb, ep.IfName, gatewayEntries(rec, ep))
	for _, l := range lacks {
		rep.add(ObjNeighbor, l.Name, "%s", l.Detail)
	}
	return err
}

// repairNeighbors puts the endpoint's entries back, all of them (each is a
// replace), when has names one missing or the links were remade.
func repairNeighbors(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint, sb *netns.NS, has func(...Object) bool, relinked bool) error {
	n := &rec.Network
	if n.NoNeighborProxy || !(relinked || has(ObjNeighbor, ObjHostVeth)) {
		return nil
	}
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	var l txLinks
	if l.bridge, err = nl.LinkByName(n.Bridge); err != nil {
		return fmt.Errorf("finding bridge %s in %s: %w", n.Bridge, h.ns, err)
	}
	if l.port, err = nl.LinkByName(ep.HostIfName); err != nil {
		return fmt.Errorf("finding bridge port %s in %s: %w", ep.HostIfName, h.ns, err)
	}
	if l.sandbox, err = iface.Open(sb, ep.IfName); err != nil {
		return err
	}
	return setNeighbors(ctx, h, rec, ep, l)
}

// wantsQuerier reports whether sandnet makes the network's bridge the
// multicast querier: IPv6 networks that answer address resolution, on a
// bridge sandnet made (an adopted bridge's settings are its owner's).
func wantsQuerier(rec *networkRecord) bool { return rec.OwnsBridge && querierNetwork(&rec.Network) }

// querierNetwork reports whether n is a network whose bridge, if sandnet
// makes it, is the multicast querier (and so snoops multicast).
func querierNetwork(n *Network) bool { return !n.NoNeighborProxy && n.Subnet6.IsValid() }

// ensureQuerier makes the network's bridge its link's multicast querier,
// if it should be.
func ensureQuerier(ctx context.Context, h *Host, rec *networkRecord) error {
	if !wantsQuerier(rec) {
		return nil
	}
	return bridge.SetMulticastQuerier(ctx, h.ns, rec.Network.Bridge, true)
}

// checkQuerier adds to rep a bridge that should be the querier and is not.
func checkQuerier(h *Host, rec *networkRecord, rep *CheckReport) error {
	if !wantsQuerier(rec) {
		return nil
	}
	lack, err := bridge.CheckMulticastQuerier(h.ns, rec.Network.Bridge)
	if lack != "" {
		rep.add(ObjNeighbor, rec.Network.Bridge, "%s", lack)
	}
	return err
}
