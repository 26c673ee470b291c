package sandnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/ipam"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

// driver is one kind of network. Each driver is one file (driver_NAME.go)
// that owns everything about itself: its Network fields, its host-side
// objects, its attach and detach steps, and its part of Check and Repair.
// The rest of the package knows drivers only through this interface and
// the registry below.
type driver interface {
	// traits says what the driver uses of what the package offers.
	traits() traits
	// setFields names those of n's fields that belong to this driver and
	// are set ("" if none): another driver's network refuses them.
	setFields(n *Network) string
	// normalize validates n's fields that belong to the driver and fills in
	// their defaults that do not depend on the host.
	normalize(n *Network) error
	// settle copies into the normalised request n the driver's fields of
	// the recorded network o that the request leaves to the host or that
	// change at run time, so that sameAs compares the rest.
	settle(n, o *Network)
	// hostDefaults fills in the defaults that depend on the host (a free
	// subnet, the uplink's MTU).
	hostDefaults(h *Host, n *Network) error
	// createNetwork makes the network's host-side objects and may note in rec
	// what it created; the undo stack removes them.
	createNetwork(ctx context.Context, h *Host, rec *networkRecord) (undoStack, error)
	// removeNetwork removes them again; idempotent.
	removeNetwork(ctx context.Context, h *Host, rec *networkRecord) error
	// attach runs the driver's steps through tx.step, pushing undos on tx.undo.
	attach(ctx context.Context, tx *attachTx) error
	// detach removes what attach made, best effort and idempotent; the
	// sandbox namespace may be gone.
	detach(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint) error
	// checkNetwork adds to rep what is missing of the network's own objects.
	checkNetwork(ctx context.Context, h *Host, rec *networkRecord, rep *CheckReport) error
	// networkView reads, once for all of eps, what checkEndpoint needs of
	// the network's shared objects (its firewall rules, its bridge's
	// tables); nil if the driver has nothing to read.
	networkView(ctx context.Context, h *Host, rec *networkRecord, eps []*Endpoint) (any, error)
	// checkEndpoint adds to rep what is missing of the endpoint's objects;
	// sb is its sandbox (nil if it could not be opened) and view, when not
	// nil, networkView's for a set of endpoints holding ep. It reports
	// false when a link is broken (the name server is not probed).
	checkEndpoint(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint, sb *netns.NS, rep *CheckReport, view any) (bool, error)
	// repairNetwork puts back the network's own objects.
	repairNetwork(ctx context.Context, h *Host, rec *networkRecord) error
	// repairEndpoint puts back the endpoint's objects that has reports
	// missing; sb is its sandbox.
	repairEndpoint(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint, sb *netns.NS, has func(...Object) bool) error
}

// traits are what a driver uses of the package's shared steps.
type traits struct {
	ipam       bool // addresses come from the network's pools
	nameServer bool // the network's gateway runs the embedded name server
	hostNS     bool // the sandbox is the host namespace itself
	veth       bool // a veth pair to a bridge in the host namespace (vethStep)
}

// registry lists the drivers, the default first, in the order messages
// name them. Adding a driver is its file and one line here.
var registry = []struct {
	name Driver
	drv  driver
}{
	{DriverBridge, bridgeDriver{}},
	{DriverHost, hostDriver{}},
	{DriverNone, noneDriver{}},
	{DriverMacvlan, macvlanDriver{}},
	{DriverOverlay, overlayDriver{}},
}

func driverFor(d Driver) (driver, error) {
	for _, r := range registry {
		if r.name == d {
			return r.drv, nil
		}
	}
	var names []string
	for _, r := range registry {
		names = append(names, string(r.name))
	}
	return nil, invalidf("unknown driver %q (want %s)", d, strings.Join(names, ", "))
}

// traitsOf returns the traits of driver d (none for an unknown one).
func traitsOf(d Driver) traits {
	drv, err := driverFor(d)
	if err != nil {
		return traits{}
	}
	return drv.traits()
}

// noParts is what a driver without host-side objects embeds: no fields of
// its own, nothing to check or repair.
type noParts struct{}

func (noParts) setFields(*Network) string                                  { return "" }
func (noParts) normalize(*Network) error                                   { return nil }
func (noParts) settle(*Network, *Network)                                  {}
func (noParts) hostDefaults(*Host, *Network) error                         { return nil }
func (noParts) removeNetwork(context.Context, *Host, *networkRecord) error { return nil }
func (noParts) createNetwork(context.Context, *Host, *networkRecord) (undoStack, error) {
	return nil, nil
}
func (noParts) detach(context.Context, *Host, *networkRecord, *Endpoint) error { return nil }
func (noParts) checkNetwork(context.Context, *Host, *networkRecord, *CheckReport) error {
	return nil
}
func (noParts) networkView(context.Context, *Host, *networkRecord, []*Endpoint) (any, error) {
	return nil, nil
}
func (noParts) checkEndpoint(context.Context, *Host, *networkRecord, *Endpoint, *netns.NS, *CheckReport, any) (bool, error) {
	return true, nil
}
func (noParts) repairNetwork(context.Context, *Host, *networkRecord) error { return nil }
func (noParts) repairEndpoint(context.Context, *Host, *networkRecord, *Endpoint, *netns.NS, func(...Object) bool) error {
	return nil
}

// checkBridgeName validates the name of a network's bridge, if it names one.
func checkBridgeName(n *Network) error {
	if n.Bridge == "" {
		return nil
	}
	if err := ifname.Check(n.Bridge); err != nil {
		return fmt.Errorf("network %q: bridge: %w", n.Name, err)
	}
	return nil
}

// needSubnet is hostDefaults for drivers whose networks must name a subnet.
func needSubnet(n *Network) error {
	if !n.Subnet.IsValid() && !n.Subnet6.IsValid() {
		return invalidf("network %q: a %s network needs a subnet", n.Name, n.Driver)
	}
	return nil
}

// leaseKey is the IPAM key of an endpoint.
func leaseKey(ep *Endpoint) ipam.Key {
	return ipam.Key{Network: ep.Network, Sandbox: ep.SandboxID, Interface: ep.IfName}
}

// pools are the network's IPAM pools, IPv4 first.
func pools(n *Network) []ipam.Pool {
	var ps []ipam.Pool
	if n.Subnet.IsValid() {
		ps = append(ps, ipam.Pool{Subnet: n.Subnet, Range: n.IPRange, Gateway: n.Gateway})
	}
	if n.Subnet6.IsValid() {
		ps = append(ps, ipam.Pool{Subnet: n.Subnet6, Range: n.IPRange6, Gateway: n.Gateway6})
	}
	return ps
}

// staticAddrs are the addresses to ask IPAM for, one per subnet of n (a
// zero one: any); an address given for a family n lacks is ErrInvalid.
func staticAddrs(n *Network, ip, ip6 netip.Addr) ([]netip.Addr, error) {
	var static []netip.Addr
	if n.Subnet.IsValid() {
		static = append(static, ip)
	} else if ip.IsValid() {
		return nil, invalidf("static IP %s given but network %q has no IPv4 subnet", ip, n.Name)
	}
	if n.Subnet6.IsValid() {
		static = append(static, ip6)
	} else if ip6.IsValid() {
		return nil, invalidf("static IP6 %s given but network %q has no IPv6 subnet", ip6, n.Name)
	}
	return static, nil
}

// allocate is the address step shared by the drivers that use IPAM.
func (tx *attachTx) allocate(ctx context.Context) error {
	return tx.step(ctx, StepAddress, func() error {
		n := &tx.net.Network
		static, err := staticAddrs(n, tx.opts.IP, tx.opts.IP6)
		if err != nil {
			return err
		}
		key := leaseKey(tx.ep)
		lease, err := tx.h.ipam.Allocate(ctx, pools(n), key, static...)
		if err != nil {
			return err
		}
		tx.undo.push(func(ctx context.Context) error { return tx.h.ipam.Release(ctx, key) })
		tx.ep.Addresses = lease.Addrs
		tx.ep.Gateway, tx.ep.Gateway6 = n.Gateway, n.Gateway6
		return nil
	})
}

// vethStep is the link step of the drivers whose sandboxes hang off a
// bridge in the host namespace (bridge, overlay): a veth pair from the
// sandbox's interface to a port of the network's bridge, up. A pair of the
// same name is a leftover of an earlier attach of this endpoint (detached
// with SandboxGoing while its namespace lived on, or a crash): the name is
// derived from the endpoint's ID, whose claim we hold, so it is replaced.
func (tx *attachTx) vethStep(ctx context.Context) error {
	h, n, ep := tx.h, &tx.net.Network, tx.ep
	ep.Bridge = n.Bridge
	ep.HostIfName = hostVethName(ep.ID)
	ep.MTU = n.MTU
	return tx.step(ctx, StepLink, func() error {
		mac := tx.opts.MAC
		if mac == nil {
			mac = macFor(ep.Addresses)
		}
		port, br, ipv6Off, err := createVeth(ctx, h, n, ep, tx.sb, mac, tx.birth)
		if err != nil {
			return err
		}
		tx.undo.push(func(ctx context.Context) error { return veth.Delete(ctx, h.ns, ep.HostIfName) })
		tx.links.port, tx.links.bridge, tx.links.ipv6Off = port, br, ipv6Off
		if mac != nil {
			ep.MAC = mac.String()
		}
		return nil
	})
}

// hostVethName is the host end of an endpoint's veth pair.
func hostVethName(id string) string { return ifname.Derive("snv", id) }

// createVeth makes ep's veth pair: the host end a port of n's bridge, the
// other end ep.IfName in sb; both up. A veth of the host end's name (ours
// by name) is replaced (veth.Pair.Replace). It returns the host end, the
// bridge, and whether the sandbox's end is known to have IPv6 off: an
// endpoint without an IPv6 address gets its interface born so, in one
// visit to the sandbox (iface.BornWithoutIPv6; birth, if not nil, is that
// visit begun ahead), and Configure then has nothing to check.
func createVeth(ctx context.Context, h *Host, n *Network, ep *Endpoint, sb *netns.NS, mac net.HardwareAddr, birth *iface.Birth) (port, br netlink.Link, ipv6Off bool, err error) {
	nl, err := h.ns.Netlink()
	if err != nil {
		return nil, nil, false, err
	}
	br, err = nl.LinkByName(n.Bridge)
	if err != nil {
		return nil, nil, false, fmt.Errorf("finding bridge %s in %s: %w", n.Bridge, h.ns, err)
	}
	create := func() error {
		port, err = veth.Create(ctx, h.ns, veth.Pair{
			Name: ep.HostIfName, PeerName: ep.IfName, PeerNS: sb, MTU: ep.MTU, PeerMAC: mac,
			Master: br.Attrs().Index, MasterName: n.Bridge, Up: true, Replace: true,
		})
		return err
	}
	if ep.hasFamily(true) {
		if birth != nil {
			birth.Cancel()
		}
		return port, br, false, create()
	}
	if birth == nil {
		birth = iface.BeginBornWithoutIPv6(sb, ep.IfName)
	}
	ipv6Off, err = birth.Create(create)
	return port, br, ipv6Off, err
}

// configureSandbox brings lo and the interface up inside the sandbox, puts
// the endpoint's addresses on it and routes via the gateways (none on an
// internal network, which has no way out). quiet is iface.Setup.Quiet.
func (tx *attachTx) configureSandbox(ctx context.Context, quiet bool) error {
	return tx.step(ctx, StepConfigure, func() error {
		if err := iface.LoUp(ctx, tx.sb); err != nil {
			return err
		}
		link, err := iface.Open(tx.sb, tx.ep.IfName)
		if err != nil {
			return err
		}
		tx.links.sandbox = link
		for _, gw := range []netip.Addr{tx.ep.Gateway, tx.ep.Gateway6} {
			if !gw.IsValid() || tx.net.Network.Internal {
				continue
			}
			dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if gw.Is6() {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			tx.ep.Routes = append(tx.ep.Routes, Route{Dst: dst, Via: gw})
		}
		return link.Configure(ctx, iface.Setup{Addrs: tx.ep.Addresses, Routes: tx.ep.Routes, Fresh: true, Quiet: quiet, IPv6Off: tx.links.ipv6Off})
	})
}

// hasFamily reports whether the endpoint has an IPv6 (six) or IPv4 address.
func (ep *Endpoint) hasFamily(six bool) bool {
	for _, p := range ep.Addresses {
		if p.Addr().Is6() == six {
			return true
		}
	}
	return false
}

// macFor derives Docker's MAC for an IPv4 address: 02:42 and the four bytes.
func macFor(addrs []netip.Prefix) net.HardwareAddr {
	for _, p := range addrs {
		if p.Addr().Is4() {
			b := p.Addr().As4()
			return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
		}
	}
	return nil
}
