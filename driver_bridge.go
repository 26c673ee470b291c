package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
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

func (bridgeDriver) traits() traits { return traits{ipam: true, nameServer: true} }

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
	return checkClusterCIDR(n)
}

// hostDefaults picks the MTU of the host's uplink and, for a network that
// names no subnet, a free /24 from 10.89.0.0/16, as netavark does; a
// subnet given is checked against the host's addresses and routes.
func (bridgeDriver) hostDefaults(h *Host, n *Network) error {
	if n.MTU == 0 {
		n.MTU = uplinkMTU(h)
	}
	if n.Subnet.IsValid() || n.Subnet6.IsValid() {
		return checkHostAddrs(h, n)
	}
	taken, err := usedPrefixes(h)
	if err != nil {
		return err
	}
	base := netip.MustParsePrefix("10.89.0.0/16").Addr().As4()
	for i := 0; i < 256; i++ {
		base[2] = byte(i)
		p := netip.PrefixFrom(netip.AddrFrom4(base), 24)
		if !slices.ContainsFunc(taken, func(t netip.Prefix) bool { return overlaps(p, t) }) {
			n.Subnet, n.Gateway = p, p.Addr().Next()
			return nil
		}
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
	nl, err := h.ns.Netlink()
	if err != nil {
		return nil, err
	}
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return nl.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("listing host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			ones, _ := r.Dst.Mask.Size()
			if ones > 0 {
				used = append(used, netip.PrefixFrom(a.Unmap(), ones))
			}
		}
	}
	return used, nil
}

// uplinkMTU is the MTU of the host namespace's default-route link, else 1500.
func uplinkMTU(h *Host) int {
	nl, err := h.ns.Netlink()
	if err != nil {
		return 1500
	}
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return nl.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return 1500
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			if l, err := nl.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU >= 68 {
				return l.Attrs().MTU
			}
		}
	}
	return 1500
}

func (bridgeDriver) createNetwork(ctx context.Context, h *Host, rec *networkRecord) (undoStack, error) {
	var undo undoStack
	n := &rec.Network
	_, created, err := bridge.Ensure(ctx, h.ns, bridge.Config{Name: n.Bridge, MTU: n.MTU, Addrs: gatewayPrefixes(n)})
	if err != nil {
		return nil, err
	}
	if created {
		rec.OwnsBridge = true
		undo.push(func(ctx context.Context) error { return bridge.Delete(ctx, h.ns, n.Bridge) })
	}
	if err := h.ensureQuerier(ctx, rec); err != nil {
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
	h, ep := tx.h, tx.ep
	if err := tx.allocate(ctx); err != nil {
		return err
	}
	if err := tx.vethStep(ctx); err != nil {
		return err
	}
	if err := tx.configureSandbox(ctx); err != nil {
		return err
	}
	if err := tx.answerNeighbors(ctx); err != nil {
		return err
	}
	if err := tx.step(ctx, StepDNS, func() error { return h.setupDNS(ctx, tx) }); err != nil {
		return err
	}
	return tx.step(ctx, StepPorts, func() error {
		if err := addEndpointRules(ctx, h, tx.net, ep, tx.opts.Ports); err != nil {
			return err
		}
		tx.undo.push(func(ctx context.Context) error { return removeEndpointRules(ctx, h, tx.net, ep) })
		return nil
	})
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
			h.forgetNeighbors(ctx, &rec.Network, ep),
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
		return errors.Join(err, veth.Delete(ctx, h.ns, hostIf))
	}
	// Deleting the veth is mostly the kernel waiting (RCU grace periods,
	// references going; the bare deletion takes about 16 ms): the rest goes
	// meanwhile. The lease is released after both (by the caller), so the
	// address is not handed out while the old interface still has it.
	vethErr := make(chan error, 1)
	go func() { vethErr <- veth.Delete(ctx, h.ns, hostIf) }()
	err := others()
	return errors.Join(err, <-vethErr)
}

// checkNetwork verifies the bridge, its gateway addresses, the host
// settings and the network's firewall rules.
func (bridgeDriver) checkNetwork(ctx context.Context, h *Host, nrec *networkRecord, rep *CheckReport) error {
	n := &nrec.Network
	link, err := iface.Open(h.ns, n.Bridge)
	if err != nil {
		rep.add(ObjBridge, n.Bridge, "missing from %s", h.ns)
	} else {
		if kind := link.Kind(); kind != "bridge" {
			rep.Problems = append(rep.Problems, Problem{Object: ObjBridge, Name: n.Bridge, Detail: "is a " + kind + ", not a bridge"})
		}
		if !link.IsUp() {
			rep.add(ObjBridge, n.Bridge, "is down")
		}
		have, err := link.Addrs()
		if err != nil {
			return err
		}
		for _, p := range gatewayPrefixes(n) {
			if !slices.Contains(have, p) {
				rep.add(ObjGatewayAddr, p.String(), "missing from bridge %s", n.Bridge)
			}
		}
	}
	if err := h.checkQuerier(nrec, rep); err != nil {
		return err
	}
	for _, key := range networkSysctls(n) {
		if v, err := h.ns.ReadSysctl(key); err == nil && v != "1" {
			rep.add(ObjSysctl, key, "is %s, want 1", v)
		}
	}
	if v, err := h.ns.ReadSysctl(localnetKey(n)); err == nil {
		switch want := localnetWanted(h, n, "", nil); {
		case want && v != "1":
			rep.add(ObjSysctl, localnetKey(n), "is %s, want 1 (a port is published on 127.0.0.1)", v)
		case !want && v != "0":
			rep.add(ObjSysctl, localnetKey(n), "is %s, want 0 (no port published on 127.0.0.1 needs it)", v)
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

func (bridgeDriver) missingRules(ctx context.Context, h *Host, n *Network, eps []*Endpoint) ([]nat.Rule, error) {
	var nes []nat.Endpoint
	for _, ep := range eps {
		nes = append(nes, natEndpoint(ep, ep.Ports))
	}
	missing, err := h.fw.Check(ctx, natNetwork(n), nes)
	if err != nil {
		return nil, fmt.Errorf("checking firewall rules of network %q: %w", n.Name, err)
	}
	return missing, nil
}

// checkEndpoint verifies the host end of the veth pair (present, up, a port
// of the bridge), the endpoint's firewall rules and the entries that let
// the bridge answer address resolution for it.
func (d bridgeDriver) checkEndpoint(ctx context.Context, h *Host, n *Network, ep *Endpoint, rep *CheckReport, missing []nat.Rule) (bool, error) {
	linksOK := true
	nl, err := h.ns.Netlink()
	if err != nil {
		return false, err
	}
	link, err := nl.LinkByName(ep.HostIfName)
	if err != nil {
		rep.add(ObjHostVeth, ep.HostIfName, "missing from %s", h.ns)
		linksOK = false
	} else {
		if link.Attrs().Flags&net.FlagUp == 0 {
			rep.add(ObjHostVeth, ep.HostIfName, "is down")
			linksOK = false
		}
		br, err := nl.LinkByName(n.Bridge)
		if err != nil || link.Attrs().MasterIndex != br.Attrs().Index {
			rep.add(ObjHostVeth, ep.HostIfName, "is not a port of bridge %s", n.Bridge)
			linksOK = false
		}
		if err := checkPortFlags(h, n, ep, rep); err != nil {
			return false, err
		}
	}
	if missing == nil {
		if missing, err = d.missingRules(ctx, h, n, []*Endpoint{ep}); err != nil {
			return false, err
		}
	}
	mine := nat.EndpointRules(natNetwork(n), natEndpoint(ep, ep.Ports))
	for _, r := range missing {
		if slices.ContainsFunc(mine, func(m nat.Rule) bool { return m.Comment == r.Comment && m.Family == r.Family }) {
			rep.add(ObjRule, r.Command(), "missing from %s", h.ns)
		}
	}
	return linksOK, h.checkNeighbors(n, ep, rep)
}

// repairNetwork puts back the bridge, its gateway addresses, the host
// settings and the rules; each is ensured, so what is there stays.
func (bridgeDriver) repairNetwork(ctx context.Context, h *Host, nrec *networkRecord) error {
	n := &nrec.Network
	if _, _, err := bridge.Ensure(ctx, h.ns, bridge.Config{Name: n.Bridge, MTU: n.MTU, Addrs: gatewayPrefixes(n)}); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	if err := h.ensureQuerier(ctx, nrec); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	rec := *nrec // ensureNetworkRules notes host changes; the record stays as it is
	if err := ensureNetworkRules(ctx, h, &rec); err != nil {
		return fmt.Errorf("repairing network %q: %w", n.Name, err)
	}
	if n.Subnet.IsValid() {
		if err := setLocalnet(ctx, h, n, localnetWanted(h, n, "", nil)); err != nil {
			return fmt.Errorf("repairing network %q: %w", n.Name, err)
		}
	}
	return nil
}

// repairEndpoint puts back the veth pair with what each end needs, then
// the bridge port flags (on a new pair, or any that is off), the
// published-port rules and the entries that answer address resolution.
func (bridgeDriver) repairEndpoint(ctx context.Context, h *Host, n *Network, ep *Endpoint, sb *netns.NS, has func(...Object) bool) error {
	var errs []error
	relinked := false
	if has(ObjHostVeth, ObjSandboxIf, ObjAddress, ObjRoute) {
		var err error
		relinked, err = repairLinks(ctx, h, n, ep, sb)
		errs = append(errs, err)
	}
	if relinked || has(ObjPortFlag) {
		errs = append(errs, setPortFlags(ctx, h, n, ep.HostIfName))
	}
	if (relinked || has(ObjRule)) && len(ep.Ports) > 0 {
		errs = append(errs, h.fw.AddEndpoint(ctx, natNetwork(n), natEndpoint(ep, ep.Ports)))
	}
	// A new pair, or a port that left the bridge and came back, has none
	// of its flags and entries.
	errs = append(errs, h.repairNeighbors(ctx, n, ep, sb, has, relinked))
	return errors.Join(errs...)
}

// repairLinks puts back the veth pair (both ends, if either is gone), then
// what is missing on each end: up, on the bridge, addresses, routes. It
// reports whether it made a new pair.
func repairLinks(ctx context.Context, h *Host, n *Network, ep *Endpoint, sb *netns.NS) (bool, error) {
	nl, err := h.ns.Netlink()
	if err != nil {
		return false, err
	}
	br, err := nl.LinkByName(n.Bridge)
	if err != nil {
		return false, fmt.Errorf("finding bridge %s in %s: %w", n.Bridge, h.ns, err)
	}
	hostLink, herr := nl.LinkByName(ep.HostIfName)
	sbLink, serr := iface.Open(sb, ep.IfName)
	relinked := herr != nil || serr != nil
	if relinked {
		// Half a pair cannot be mended: remove what is left, make a new one.
		if err := veth.Delete(ctx, h.ns, ep.HostIfName); err != nil {
			return false, err
		}
		if serr == nil {
			if kind := sbLink.Kind(); kind != "veth" {
				return false, fmt.Errorf("sandbox %s has a %s called %s, not sandnet's veth: %w", sb, kind, ep.IfName, ErrExists)
			}
			if err := veth.Delete(ctx, sb, ep.IfName); err != nil {
				return false, err
			}
		}
		mac, _ := net.ParseMAC(ep.MAC)
		if _, _, err := createVeth(ctx, h, n, ep, sb, mac); err != nil {
			return false, err
		}
		if hostLink, err = nl.LinkByName(ep.HostIfName); err != nil {
			return true, err
		}
		if sbLink, err = iface.Open(sb, ep.IfName); err != nil {
			return true, err
		}
		if err := iface.LoUp(ctx, sb); err != nil {
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
	return relinked, configureLink(ctx, sb, sbLink, ep, relinked)
}

func natNetwork(n *Network) nat.Network {
	return nat.Network{Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet, Subnet6: n.Subnet6, Gateway: n.Gateway, Gateway6: n.Gateway6,
		Internal: n.Internal, NoICC: n.NoICC, Routed: n.Routed, ClusterCIDR: n.ClusterCIDR}
}

func natEndpoint(ep *Endpoint, ports []PortMapping) nat.Endpoint {
	return nat.Endpoint{ID: ep.ID, Sandbox: ep.SandboxID, Addr: ep.Addr(false), Addr6: ep.Addr(true), Ports: ports}
}

// networkSysctls are the host-wide settings a bridge network needs:
// forwarding, only for networks that go out. (route_localnet, per bridge,
// follows the network's published ports: see localnetKey.)
func networkSysctls(n *Network) []string {
	var keys []string
	if !n.Internal && n.Subnet.IsValid() {
		keys = append(keys, "net.ipv4.ip_forward")
	}
	if !n.Internal && n.Subnet6.IsValid() {
		keys = append(keys, "net.ipv6.conf.all.forwarding")
	}
	return keys
}

// localnetKey is the route_localnet setting of the network's bridge. It is
// on only while some endpoint of the network publishes a port that answers
// on 127.0.0.1 (published there, or on every IPv4 address): the host's
// packets to 127.0.0.1 are DNATed out of the bridge then, which the kernel
// allows only with it. It lets 127.0.0.0/8 cross the bridge both ways, so
// while it is on, the input chain's localnet guard drops what the
// sandboxes send to 127.0.0.0/8; off, a flushed firewall (nft flush
// ruleset, iptables -F) leaves the host's 127.0.0.1 services out of their
// reach all the same.
func localnetKey(n *Network) string { return "net/ipv4/conf/" + n.Bridge + "/route_localnet" }

// needsLocalnet reports whether one of ports answers on 127.0.0.1.
func needsLocalnet(ports []PortMapping) bool {
	return slices.ContainsFunc(ports, func(p PortMapping) bool {
		ip := p.HostIP
		return !ip.IsValid() || (ip.Is4() && (ip.IsUnspecified() || ip.IsLoopback()))
	})
}

// localnetWanted reports whether an endpoint of network n other than skip
// (and, if extra is set, the endpoint being attached) needs route_localnet.
func localnetWanted(h *Host, n *Network, skip string, extra []PortMapping) bool {
	if !n.Subnet.IsValid() {
		return false
	}
	return needsLocalnet(extra) || h.st.AnyEndpoint(n.Name, func(e *endpointRecord) bool {
		return e.Endpoint.ID != skip && needsLocalnet(e.Endpoint.Ports)
	})
}

// setLocalnet turns the bridge's route_localnet on or off, if it differs.
// A bridge that is gone has nothing to turn off.
func setLocalnet(ctx context.Context, h *Host, n *Network, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	changed, err := h.ns.Sysctl(localnetKey(n), v)
	if changed {
		explain.Say(ctx, "%s", h.ns.Shell("sysctl -w "+localnetKey(n)+"="+v))
	}
	if err != nil && !on && errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("setting %s for network %q: %w", localnetKey(n), n.Name, err)
	}
	return nil
}

// ensureNetworkRules prepares the host for a bridge network and installs
// its rules. The settings of networkSysctls are turned on where off; a
// host-wide one changed is recorded in rec.HostChanges, never reverted.
func ensureNetworkRules(ctx context.Context, h *Host, rec *networkRecord) error {
	n := &rec.Network
	for _, key := range networkSysctls(n) {
		changed, err := h.ns.Sysctl(key, "1")
		if changed {
			explain.Say(ctx, "%s", h.ns.Shell("sysctl -w "+key+"=1"))
		}
		if err != nil {
			return fmt.Errorf("enabling %s for network %q: %w", key, n.Name, err)
		}
		if changed && (!rec.OwnsBridge || key[:4] != "net/") {
			rec.HostChanges = append(rec.HostChanges, key+"=1")
			h.log.Info("changed a host setting", "setting", key+"=1", "network", n.Name)
		}
	}
	if err := h.fw.EnsureNetwork(ctx, natNetwork(n)); err != nil {
		return errors.Join(err, h.fw.RemoveNetwork(context.WithoutCancel(ctx), natNetwork(n)))
	}
	return nil
}

// addEndpointRules sets the endpoint's bridge port flags and publishes its
// ports: host ports are claimed in the Host's port table (conflicts are
// *nat.PortConflictError), then the rules are added. On failure nothing is
// left behind.
func addEndpointRules(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint, ports []PortMapping) error {
	n := &rec.Network
	if err := setPortFlags(ctx, h, n, ep.HostIfName); err != nil {
		return err
	}
	if len(ports) == 0 {
		return nil
	}
	claimed, err := h.claimPorts(ctx, ep, ports, func(ps []PortMapping) error {
		return nat.Validate(natNetwork(n), natEndpoint(ep, ps))
	})
	if err != nil {
		return err
	}
	err = nil
	if needsLocalnet(claimed) {
		err = setLocalnet(ctx, h, n, true)
	}
	if err == nil {
		err = h.fw.AddEndpoint(ctx, natNetwork(n), natEndpoint(ep, claimed))
	}
	if err != nil {
		ctx := context.WithoutCancel(ctx)
		return errors.Join(err,
			h.fw.RemoveEndpoint(ctx, natNetwork(n), natEndpoint(ep, claimed)),
			h.st.ReleasePorts(ctx, holderOf(ep), claimed),
			setLocalnet(ctx, h, n, localnetWanted(h, n, ep.ID, nil)))
	}
	ep.Ports = claimed
	return nil
}

// removeEndpointRules removes the endpoint's published ports, if it has
// any. Its record lists them from the moment they are claimed, also when an
// attach died half-way.
func removeEndpointRules(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint) error {
	if len(ep.Ports) == 0 {
		return nil
	}
	if err := h.fw.RemoveEndpoint(ctx, natNetwork(&rec.Network), natEndpoint(ep, ep.Ports)); err != nil {
		return err
	}
	if needsLocalnet(ep.Ports) && !localnetWanted(h, &rec.Network, ep.ID, nil) {
		// The last port answering on 127.0.0.1 goes: so does route_localnet.
		if err := setLocalnet(ctx, h, &rec.Network, false); err != nil {
			return err
		}
	}
	return h.st.ReleasePorts(ctx, holderOf(ep), ep.Ports)
}

// portFlags are the flags the endpoint's bridge port must have. Where
// bridged traffic goes through netfilter (br_netfilter loaded and
// net.bridge.bridge-nf-call-iptables / -ip6tables = 1, which sandnet never
// changes), a sandbox reaching its own published port is DNATed back out
// of the port it came in by, so the port needs hairpin mode, and the
// FORWARD rules enforce ICC. Where a family's bridged frames bypass
// netfilter, a NoICC network isolates its ports at L2; that holds for every
// family at once, so it is needed unless both settings are on (with only
// the IPv4 one on, IPv6 went from sandbox to sandbox). Isolation also stops
// a sandbox's hairpin traffic (an isolated port does not deliver to
// itself), so with it a NoICC network's sandboxes do not reach their own
// published ports through a host address.
//
// Check and Repair check and set each flag of this list.
func portFlags(h *Host, n *Network) []bridge.PortFlag {
	nf := func(key string) bool { v, err := h.ns.ReadSysctl(key); return err == nil && v == "1" }
	nf4, nf6 := nf("net.bridge.bridge-nf-call-iptables"), nf("net.bridge.bridge-nf-call-ip6tables")
	var fs []bridge.PortFlag
	if n.NoICC && !(nf4 && nf6) {
		fs = append(fs, bridge.Isolated)
	} else if nf4 || nf6 {
		fs = append(fs, bridge.Hairpin)
	}
	return fs
}

// setPortFlags sets every flag of portFlags on the endpoint's bridge port.
func setPortFlags(ctx context.Context, h *Host, n *Network, port string) error {
	for _, f := range portFlags(h, n) {
		if err := bridge.SetPortFlag(ctx, h.ns, port, f); err != nil {
			return err
		}
	}
	return nil
}

// checkPortFlags reports each flag of portFlags that is off on the
// endpoint's bridge port (a bridge deleted and made again by hand, or by
// Repair, drops them all).
func checkPortFlags(h *Host, n *Network, ep *Endpoint, rep *CheckReport) error {
	want := portFlags(h, n)
	if len(want) == 0 {
		return nil
	}
	on, err := bridge.PortFlags(h.ns, ep.HostIfName)
	if errors.Is(err, ErrNotFound) {
		err = nil // not a port (any more): every flag is off
	}
	if err != nil {
		return err
	}
	for _, f := range want {
		if !f.In(on) {
			rep.add(ObjPortFlag, ep.HostIfName+" "+string(f), "is off (bridge link set dev %s %s on)", ep.HostIfName, f)
		}
	}
	return nil
}

// checkHostAddrs refuses a bridge network whose subnet holds an address
// the host namespace already has on another link (its gateway, or a
// sandbox, would take the host's own address, e.g. its LAN address), and
// warns when the subnet overlaps a route of the host's: its sandboxes then
// shadow part of what that route reaches.
func checkHostAddrs(h *Host, n *Network) error {
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	links, err := nlwrap.Retry(nl.LinkList)
	if err != nil {
		return fmt.Errorf("network %q: listing host links: %w", n.Name, err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	// Other networks' bridges are checkOverlap's (a conflict, ErrExists).
	ours := map[string]bool{n.Bridge: true}
	recs, err := h.st.Networks()
	if err != nil {
		return err
	}
	for _, r := range recs {
		ours[r.Network.Bridge] = true
	}
	addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("network %q: listing host addresses: %w", n.Name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ours[names[a.LinkIndex]] {
			continue
		}
		ip = ip.Unmap()
		for _, p := range []netip.Prefix{n.Subnet, n.Subnet6} {
			if p.IsValid() && p.Contains(ip) {
				return invalidf("network %q: subnet %s holds %s, an address the host already has on %s (the gateway or a sandbox would take the host's own address)", n.Name, p, ip, names[a.LinkIndex])
			}
		}
	}
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return nl.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("network %q: listing host routes: %w", n.Name, err)
	}
	for _, r := range routes {
		if r.Dst == nil || ours[names[r.LinkIndex]] {
			continue
		}
		dst, ok := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if !ok || ones == 0 {
			continue
		}
		rp := netip.PrefixFrom(dst.Unmap(), ones)
		for _, p := range []netip.Prefix{n.Subnet, n.Subnet6} {
			if p.IsValid() && overlaps(p, rp) {
				h.log.Warn("the network's subnet overlaps a route of the host's: its sandboxes shadow part of what that route reaches",
					"network", n.Name, "subnet", p, "route", rp, "dev", names[r.LinkIndex])
			}
		}
	}
	return nil
}
