package sandnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
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
// An entry the kernel flushes (the sandbox's interface going down, the
// bridge losing its last IPv4 address) brings back only the flooding, for
// that sandbox: Check reports it (doctor's neighbor-proxy), Repair puts it
// back. On a NoICC network the bridge tells a sandbox a sibling's MAC, as
// flooding did not, but the isolated ports still carry nothing between them.
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
const StepNeighbors Step = "answering address resolution"

// The kinds of object Check verifies for address resolution.
const (
	ObjNeighbor Object = "neighbor"      // a permanent neighbour entry (gateway in the sandbox, sandbox on the bridge)
	ObjFDB      Object = "fdb"           // the static FDB entry of the sandbox's MAC on its port
	ObjPortFlag Object = "port-flag"     // a flag of the endpoint's bridge port (hairpin, isolated: portFlags; proxy_arp_wifi)
	ObjQuerier  Object = "mcast-querier" // an IPv6 network's bridge is its link's multicast querier
)

// neighborProxy reports whether n's bridge answers address resolution.
func neighborProxy(n *Network) bool { return n.Driver == DriverBridge && !n.NoNeighborProxy }

// neighLinks are the links an endpoint's entries hang off.
type neighLinks struct {
	sandbox *iface.Link  // the endpoint's interface, in its sandbox
	port    netlink.Link // its bridge port, in the host namespace
	bridge  netlink.Link // the bridge
}

// answerNeighbors is the bridge driver's step after the sandbox's
// interface is configured: the entries above, on the links attach made,
// each undone on failure.
func (tx *attachTx) answerNeighbors(ctx context.Context) error {
	n, ep := &tx.net.Network, tx.ep
	if !neighborProxy(n) {
		return nil
	}
	return tx.step(ctx, StepNeighbors, func() error {
		l := tx.links
		if ep.MAC == "" { // no MAC of sandnet's (IPv6 only): the kernel's
			ep.MAC = l.sandbox.MAC().String()
		}
		tx.undo.push(func(ctx context.Context) error { return tx.h.forgetNeighbors(ctx, n, ep) })
		return tx.h.setNeighbors(ctx, n, ep, tx.sb, l, true)
	})
}

// setNeighbors sets the endpoint's entries on links l: the sandbox's for
// its gateways, the port flag, the FDB entry and the bridge device's for
// its addresses; fresh (a new endpoint) also turns off the sandbox's
// router solicitations. Every one replaces what is there.
func (h *Host) setNeighbors(ctx context.Context, n *Network, ep *Endpoint, sb *netns.NS, l neighLinks, fresh bool) error {
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	mac := l.sandbox.MAC()
	for _, gw := range []netip.Addr{n.Gateway, n.Gateway6} {
		if gw.IsValid() && ep.hasFamily(gw.Is6()) {
			if err := l.sandbox.SetNeighbor(ctx, gw, l.bridge.Attrs().HardwareAddr); err != nil {
				return err
			}
		}
	}
	if fresh && ep.hasFamily(true) {
		// No router solicitations: the sandbox's routes are sandnet's, and
		// each would reach every port.
		explain.Say(ctx, "%s", sb.Shell("sysctl -w net.ipv6.conf."+ep.IfName+".router_solicitations=0"))
		key := "net/ipv6/conf/" + strings.ReplaceAll(ep.IfName, ".", "/") + "/router_solicitations"
		if _, err := sb.Sysctl(key, "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("turning router solicitations off on %s in %s: %w", ep.IfName, sb, err)
		}
	}
	if err := bridge.SetPortFlagLink(ctx, h.ns, nl, l.port, bridge.ProxyARPWiFi, true); err != nil {
		return err
	}
	if err := bridge.AddFDBIndex(ctx, h.ns, nl, l.port.Attrs().Index, ep.HostIfName, mac); err != nil {
		return err
	}
	br := iface.Wrap(h.ns, nl, l.bridge)
	for _, p := range ep.Addresses {
		if err := br.SetNeighbor(ctx, p.Addr(), mac); err != nil {
			return err
		}
	}
	return nil
}

// lookupNeighLinks finds the endpoint's links, for Repair.
func (h *Host) lookupNeighLinks(n *Network, ep *Endpoint, sb *netns.NS) (neighLinks, error) {
	var l neighLinks
	nl, err := h.ns.Netlink()
	if err != nil {
		return l, err
	}
	if l.bridge, err = nl.LinkByName(n.Bridge); err != nil {
		return l, fmt.Errorf("finding bridge %s in %s: %w", n.Bridge, h.ns, err)
	}
	if l.port, err = nl.LinkByName(ep.HostIfName); err != nil {
		return l, fmt.Errorf("finding bridge port %s in %s: %w", ep.HostIfName, h.ns, err)
	}
	l.sandbox, err = iface.Open(sb, ep.IfName)
	return l, err
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
	br, err := iface.Open(h.ns, n.Bridge)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ep.Addresses {
		errs = append(errs, br.DelNeighbor(ctx, p.Addr(), nil))
	}
	return errors.Join(errs...)
}

// checkNeighbors adds to rep what is missing or wrong of the endpoint's
// entries. It opens the sandbox; a sandbox, interface or port that is gone
// is left to the checks that say so.
func (h *Host) checkNeighbors(n *Network, ep *Endpoint, rep *CheckReport) error {
	if !neighborProxy(n) {
		return nil
	}
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	br, err := nl.LinkByName(n.Bridge)
	if err != nil {
		return nil
	}
	mac, _ := net.ParseMAC(ep.MAC)
	onBridge, err := iface.Wrap(h.ns, nl, br).Neighbors()
	if err != nil {
		return err
	}
	for _, p := range ep.Addresses {
		checkEntry(rep, bridgeEntry(n, p.Addr()), onBridge[p.Addr()], mac)
	}
	if flags, err := bridge.PortFlags(h.ns, ep.HostIfName); err == nil {
		if !flags.ProxyArpWiFi {
			rep.add(ObjPortFlag, portFlagName(ep.HostIfName), "is off")
		}
		if mac != nil {
			ok, err := bridge.HasStaticFDB(h.ns, ep.HostIfName, mac)
			if err != nil {
				return err
			}
			if !ok {
				rep.add(ObjFDB, ep.HostIfName, "no static entry for %s", mac)
			}
		}
	}
	sb, err := netns.Open(ep.NetNS)
	if err != nil {
		return nil
	}
	defer sb.Close()
	inSandbox, err := iface.Neighbors(sb, ep.IfName)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, gw := range []netip.Addr{n.Gateway, n.Gateway6} {
		if gw.IsValid() && ep.hasFamily(gw.Is6()) {
			checkEntry(rep, gatewayEntry(gw), inSandbox[gw], br.Attrs().HardwareAddr)
		}
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

// repairNeighbors puts the endpoint's entries back, all of them (each is a
// replace), when has names one missing or the links were remade.
func (h *Host) repairNeighbors(ctx context.Context, n *Network, ep *Endpoint, sb *netns.NS, has func(...Object) bool, relinked bool) error {
	if !neighborProxy(n) || !(relinked || has(ObjNeighbor, ObjFDB, ObjPortFlag, ObjHostVeth)) {
		return nil
	}
	l, err := h.lookupNeighLinks(n, ep, sb)
	if err != nil {
		return err
	}
	return h.setNeighbors(ctx, n, ep, sb, l, false)
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
