package sandnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/netns"
)

// A bridge network answers the address resolution it can answer itself.
//
// A plain bridge floods every ARP request and every IPv6 multicast to all
// its ports. With about a thousand sandboxes each copy is queued on the
// CPU's backlog (net.core.netdev_max_backlog, 1000 by default) and the
// answer is dropped with them: a new sandbox cannot reach its gateway. But
// sandnet knows every address and MAC on its bridge networks, so for each
// endpoint (unless Network.NoNeighborProxy):
//
//   - in the sandbox, a permanent neighbour entry for each gateway, pointing
//     to the bridge's MAC (stable: sandnet sets it when it makes the bridge),
//     so the sandbox never asks for its gateway;
//   - on the bridge device, a permanent neighbour entry for each of the
//     endpoint's addresses, so the gateway never asks for a sandbox, and a
//     static FDB entry for the sandbox's MAC on its port;
//   - on its bridge port, proxy_arp_wifi: the bridge answers an ARP request
//     from any sandbox for an address in the bridge device's neighbour
//     table, out of the port it came in by, and floods it to no sandbox.
//
// A request for an address sandnet does not know (set by hand inside a
// sandbox, a macvlan on top of one) is flooded as before, so it resolves.
//
// IPv6 neighbour solicitation between sandboxes stays multicast: the kernel
// answers it only for neigh_suppress ports, and never for a request that
// arrives on one, so on a bridge of sandboxes it cannot answer. Instead, on
// an IPv6 network whose bridge sandnet made, the bridge is the link's
// multicast querier: it then delivers a solicitation only to the port whose
// sandbox joined the solicited-node group of the address asked for, and a
// sandbox's MLD reports to no other sandbox (see bridge.SetMulticastQuerier).
// And the sandboxes send no router solicitations (nothing on a sandnet
// bridge advertises routes; the routes are set by sandnet).

// StepNeighbors is the attach step that sets up address resolution.
const StepNeighbors = "answering address resolution"

// The kinds of object Check verifies for address resolution.
const (
	ObjNeighbor = "neighbor"      // a permanent neighbour entry (gateway in the sandbox, sandbox on the bridge)
	ObjFDB      = "fdb"           // the static FDB entry of the sandbox's MAC on its port
	ObjPortFlag = "port-flag"     // a flag of the endpoint's bridge port (proxy_arp_wifi)
	ObjQuerier  = "mcast-querier" // an IPv6 network's bridge is its link's multicast querier
)

// neighborProxy reports whether n's bridge answers address resolution.
func neighborProxy(n *Network) bool { return n.Driver == DriverBridge && !n.NoNeighborProxy }

// answerNeighbors is the bridge driver's step after the sandbox's
// interface is configured: the entries above, each undone on failure.
func (tx *attachTx) answerNeighbors(ctx context.Context) error {
	n, ep := &tx.net.Network, tx.ep
	if !neighborProxy(n) {
		return nil
	}
	return tx.step(ctx, StepNeighbors, func() error {
		mac, err := tx.h.ensureNeighbors(ctx, n, ep, tx.sb, nil)
		if mac != nil && ep.MAC == "" {
			ep.MAC = mac.String()
		}
		if mac != nil {
			tx.undo.push(func(ctx context.Context) error { return tx.h.forgetNeighbors(ctx, n, ep) })
		}
		return err
	})
}

// ensureNeighbors sets what answerNeighbors describes, all of it or, when
// has is not nil, the parts has names as missing. It returns the sandbox's
// MAC once it has touched the bridge device's table.
func (h *Host) ensureNeighbors(ctx context.Context, n *Network, ep *Endpoint, sb *netns.NS, has func(obj, name string) bool) (net.HardwareAddr, error) {
	if !neighborProxy(n) {
		return nil, nil
	}
	all := has == nil
	want := func(obj, name string) bool { return all || has(obj, name) }
	snl, err := sb.RouteNetlink()
	if err != nil {
		return nil, err
	}
	sbLink, err := snl.LinkByName(ep.IfName)
	if err != nil {
		return nil, fmt.Errorf("finding %s in %s: %w", ep.IfName, sb, err)
	}
	mac := sbLink.Attrs().HardwareAddr
	nl, err := h.ns.Netlink()
	if err != nil {
		return nil, err
	}
	br, err := nl.LinkByName(n.Bridge)
	if err != nil {
		return nil, fmt.Errorf("finding bridge %s in %s: %w", n.Bridge, h.ns, err)
	}
	for _, gw := range []netip.Addr{n.Gateway, n.Gateway6} {
		if gw.IsValid() && ep.hasFamily(gw.Is6()) && want(ObjNeighbor, gatewayEntry(gw)) {
			if err := iface.SetNeighborIndex(ctx, sb, snl, sbLink.Attrs().Index, ep.IfName, gw, br.Attrs().HardwareAddr); err != nil {
				return nil, err
			}
		}
	}
	if ep.hasFamily(true) && all {
		// No router solicitations: the sandbox's routes are sandnet's, and
		// each would be flooded to every port.
		key := "net/ipv6/conf/" + strings.ReplaceAll(ep.IfName, ".", "/") + "/router_solicitations"
		explain.Say(ctx, "%s", sb.Shell("sysctl -w net.ipv6.conf."+ep.IfName+".router_solicitations=0"))
		if _, err := sb.Sysctl(key, "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("turning router solicitations off on %s in %s: %w", ep.IfName, sb, err)
		}
	}
	port := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ep.HostIfName}}
	if all || has(ObjPortFlag, portFlagName(ep.HostIfName)) || has(ObjFDB, ep.HostIfName) {
		l, err := nl.LinkByName(ep.HostIfName)
		if err != nil {
			return nil, fmt.Errorf("finding bridge port %s in %s: %w", ep.HostIfName, h.ns, err)
		}
		port.Index = l.Attrs().Index
	}
	if want(ObjPortFlag, portFlagName(ep.HostIfName)) {
		if err := bridge.SetProxyARPLink(ctx, h.ns, nl, port, true); err != nil {
			return nil, err
		}
	}
	if want(ObjFDB, ep.HostIfName) {
		if err := bridge.AddFDBIndex(ctx, h.ns, nl, port.Index, ep.HostIfName, mac); err != nil {
			return nil, err
		}
	}
	for i, p := range ep.Addresses {
		if !want(ObjNeighbor, bridgeEntry(n, p.Addr())) {
			continue
		}
		if err := iface.SetNeighborIndex(ctx, h.ns, nl, br.Attrs().Index, n.Bridge, p.Addr(), mac); err != nil {
			if i == 0 {
				return nil, err
			}
			return mac, err
		}
	}
	return mac, nil
}

// forgetNeighbors removes the endpoint's entries from the bridge device's
// table (the rest goes with its veth). It runs while the endpoint still
// holds its addresses' lease (detach, GC, an attach's undo), so an entry
// for one of them is the endpoint's own: it is deleted by address, without
// reading the table first, which would cost a pass over every sandbox's.
func (h *Host) forgetNeighbors(ctx context.Context, n *Network, ep *Endpoint) error {
	if !neighborProxy(n) {
		return nil
	}
	var errs []error
	for _, p := range ep.Addresses {
		errs = append(errs, iface.DelNeighbor(ctx, h.ns, n.Bridge, p.Addr(), nil))
	}
	return errors.Join(errs...)
}

// neighView is what the host namespace holds of a bridge network's
// address resolution, read once for any number of its endpoints: each
// read is a pass over every sandbox's entries.
type neighView struct {
	onBridge map[netip.Addr]iface.Neighbor
	flags    map[string]netlink.Protinfo
	fdb      map[string][]net.HardwareAddr
	brMAC    net.HardwareAddr
}

// readNeighView reads n's view; nil (and no error) if n's bridge does not
// answer address resolution or is missing (ObjBridge says so).
func (h *Host) readNeighView(n *Network) (*neighView, error) {
	if !neighborProxy(n) {
		return nil, nil
	}
	nl, err := h.ns.Netlink()
	if err != nil {
		return nil, err
	}
	br, err := nl.LinkByName(n.Bridge)
	if err != nil {
		return nil, nil
	}
	v := &neighView{brMAC: br.Attrs().HardwareAddr}
	if v.onBridge, err = iface.Neighbors(h.ns, n.Bridge); err != nil {
		return nil, err
	}
	if v.flags, err = bridge.AllPortFlags(h.ns, n.Bridge); err != nil {
		return nil, err
	}
	if v.fdb, err = bridge.StaticFDB(h.ns, n.Bridge); err != nil {
		return nil, err
	}
	return v, nil
}

// checkNeighbors adds to rep what is missing or wrong of the endpoint's
// entries; sb is its sandbox. view is its network's (nil: read it).
func (h *Host) checkNeighbors(n *Network, ep *Endpoint, sb *netns.NS, rep *CheckReport, view *neighView) error {
	if !neighborProxy(n) {
		return nil
	}
	if view == nil {
		v, err := h.readNeighView(n)
		if err != nil || v == nil {
			return err
		}
		view = v
	}
	mac, _ := net.ParseMAC(ep.MAC)
	for _, p := range ep.Addresses {
		checkEntry(rep, bridgeEntry(n, p.Addr()), view.onBridge[p.Addr()], mac)
	}
	inSandbox, err := iface.Neighbors(sb, ep.IfName)
	if errors.Is(err, ErrNotFound) {
		return nil // the interface is missing: ObjSandboxIf says so
	}
	if err != nil {
		return err
	}
	for _, gw := range []netip.Addr{n.Gateway, n.Gateway6} {
		if gw.IsValid() && ep.hasFamily(gw.Is6()) {
			checkEntry(rep, gatewayEntry(gw), inSandbox[gw], view.brMAC)
		}
	}
	flags, ok := view.flags[ep.HostIfName]
	if !ok {
		return nil // not a port: ObjHostVeth says so
	}
	if !flags.ProxyArpWiFi {
		rep.add(ObjPortFlag, portFlagName(ep.HostIfName), "is off")
	}
	if mac != nil && !slices.ContainsFunc(view.fdb[ep.HostIfName], func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) }) {
		rep.add(ObjFDB, ep.HostIfName, "no static entry for %s", mac)
	}
	return nil
}

func checkEntry(rep *CheckReport, name string, have iface.Neighbor, want net.HardwareAddr) {
	switch {
	case !have.Addr.IsValid():
		rep.add(ObjNeighbor, name, "missing")
	case !have.Permanent:
		rep.add(ObjNeighbor, name, "is a learned entry (%s), not a permanent one", have.MAC)
	case want != nil && !bytes.Equal(have.MAC, want):
		rep.add(ObjNeighbor, name, "points to %s, want %s", have.MAC, want)
	}
}

// repairNeighbors puts back the entries problems name as missing.
func (h *Host) repairNeighbors(ctx context.Context, n *Network, ep *Endpoint, sb *netns.NS, problems []Problem) error {
	if !neighborProxy(n) {
		return nil
	}
	has := func(obj, name string) bool {
		for _, p := range problems {
			if p.Repairable && p.Object == obj && p.Name == name {
				return true
			}
		}
		return false
	}
	_, err := h.ensureNeighbors(ctx, n, ep, sb, has)
	return err
}

// neighborProblems reports whether problems name an entry repairNeighbors
// puts back.
func neighborProblems(problems []Problem) bool {
	for _, p := range problems {
		if p.Repairable && (p.Object == ObjNeighbor || p.Object == ObjFDB || p.Object == ObjPortFlag) {
			return true
		}
	}
	return false
}

// The names of the entries in Problems: "10.88.0.2 dev sn-xxx" for the
// bridge device's, "gateway 10.88.0.1" for the sandbox's,
// "snvXXX proxy_arp_wifi" for the port flag.
func bridgeEntry(n *Network, a netip.Addr) string { return a.String() + " dev " + n.Bridge }
func gatewayEntry(gw netip.Addr) string           { return "gateway " + gw.String() }
func portFlagName(port string) string             { return port + " proxy_arp_wifi" }

// hasFamily reports whether the endpoint has an IPv6 (six) or IPv4 address.
func (ep *Endpoint) hasFamily(six bool) bool {
	for _, p := range ep.Addresses {
		if p.Addr().Is6() == six {
			return true
		}
	}
	return false
}

// wantsQuerier reports whether sandnet makes the network's bridge the
// multicast querier: IPv6 bridge networks that answer address resolution,
// on a bridge sandnet made (an adopted bridge's settings are its owner's).
func wantsQuerier(rec *networkRecord) bool {
	n := &rec.Network
	return neighborProxy(n) && n.Subnet6.IsValid() && rec.OwnsBridge
}

// ensureQuerier makes the network's bridge its link's multicast querier,
// if it should be.
func (h *Host) ensureQuerier(ctx context.Context, rec *networkRecord) error {
	if !wantsQuerier(rec) {
		return nil
	}
	return bridge.SetMulticastQuerier(ctx, h.ns, rec.Network.Bridge, true)
}

// checkQuerier adds to rep a bridge that should be the querier and is not.
func (h *Host) checkQuerier(rec *networkRecord, rep *CheckReport) error {
	if !wantsQuerier(rec) {
		return nil
	}
	on, err := bridge.MulticastQuerier(h.ns, rec.Network.Bridge)
	if errors.Is(err, ErrNotFound) {
		return nil // ObjBridge says so
	}
	if err != nil {
		return err
	}
	if !on {
		rep.add(ObjQuerier, rec.Network.Bridge, "is not its link's multicast querier (or does not snoop): IPv6 neighbour solicitations reach every sandbox")
	}
	return nil
}
