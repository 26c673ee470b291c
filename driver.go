package sandnet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/ipam"
	"github.com/sandnet/sandnet/netns"
)

// driver is how one kind of network is set up and torn down.
type driver interface {
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
}

// drivers holds the driver of each kind; each driver's file registers
// itself in an init function.
var drivers = map[Driver]driver{}

func driverFor(d Driver) (driver, error) {
	drv, ok := drivers[d]
	if !ok {
		return nil, invalidf("driver %q is not available", d)
	}
	return drv, nil
}

// usesIPAM reports whether a driver takes addresses from the network's pools.
func usesIPAM(d Driver) bool { return d != DriverHost && d != DriverNone }

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

// allocate is the address step shared by the drivers that use IPAM.
func (tx *attachTx) allocate(ctx context.Context) error {
	return tx.step(ctx, StepAddress, func() error {
		n := &tx.net.Network
		var static []netip.Addr
		if n.Subnet.IsValid() {
			static = append(static, tx.opts.IP)
		} else if tx.opts.IP.IsValid() {
			return invalidf("static IP %s given but network %q has no IPv4 subnet", tx.opts.IP, n.Name)
		}
		if n.Subnet6.IsValid() {
			static = append(static, tx.opts.IP6)
		} else if tx.opts.IP6.IsValid() {
			return invalidf("static IP6 %s given but network %q has no IPv6 subnet", tx.opts.IP6, n.Name)
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

// configureSandbox brings lo and the interface up inside the sandbox, puts
// the endpoint's addresses on it and routes via the gateways. An endpoint
// without an IPv6 address has IPv6 turned off on its interface, as Docker
// does on IPv4-only networks: no link-local address, and none of the
// multicast chatter that a bridge floods to every other sandbox.
//
// Equivalent to: ip -n SBX link set lo up; ip -n SBX addr add ADDR dev eth0;
// [ip netns exec SBX sysctl -w net.ipv6.conf.eth0.disable_ipv6=1;]
// ip -n SBX link set eth0 up; ip -n SBX route add default via GW
func (tx *attachTx) configureSandbox(ctx context.Context) error {
	return tx.step(ctx, StepConfigure, func() error {
		sb := tx.sb
		nl, err := sb.RouteNetlink()
		if err != nil {
			return err
		}
		if err := loUp(ctx, sb, nl); err != nil {
			return err
		}
		link, err := nl.LinkByName(tx.ep.IfName)
		if err != nil {
			return fmt.Errorf("finding %s in %s: %w", tx.ep.IfName, sb, err)
		}
		for _, p := range tx.ep.Addresses {
			a := &netlink.Addr{IPNet: ipNet(p)}
			extra := ""
			if p.Addr().Is6() {
				a.Flags = unix.IFA_F_NODAD
				extra = " nodad"
			}
			explain.Say(ctx, "%s", sb.Shell(fmt.Sprintf("ip addr add %s dev %s%s", p, tx.ep.IfName, extra)))
			if err := nl.AddrAdd(link, a); err != nil {
				return fmt.Errorf("adding %s to %s in %s: %w", p, tx.ep.IfName, sb, err)
			}
		}
		if !slices.ContainsFunc(tx.ep.Addresses, func(p netip.Prefix) bool { return p.Addr().Is6() }) {
			if err := disableIPv6(ctx, sb, tx.ep.IfName); err != nil {
				return err
			}
		}
		explain.Say(ctx, "%s", sb.Shell("ip link set "+tx.ep.IfName+" up"))
		if err := nl.LinkSetUp(link); err != nil {
			return fmt.Errorf("bringing %s up in %s: %w", tx.ep.IfName, sb, err)
		}
		for _, gw := range []netip.Addr{tx.ep.Gateway, tx.ep.Gateway6} {
			if !gw.IsValid() || tx.net.Network.Internal {
				continue // an internal network has no way out, so no default route
			}
			dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if gw.Is6() {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(dst), Gw: gw.AsSlice()}
			explain.Say(ctx, "%s", sb.Shell(fmt.Sprintf("ip %sroute add default via %s dev %s", family(gw), gw, tx.ep.IfName)))
			if err := nl.RouteAdd(r); err != nil {
				return fmt.Errorf("adding default route via %s in %s: %w", gw, sb, err)
			}
			tx.ep.Routes = append(tx.ep.Routes, Route{Dst: dst, Via: gw})
		}
		return nil
	})
}

// disableIPv6 turns IPv6 off on interface ifName inside sb; a kernel
// without IPv6 has nothing to turn off.
func disableIPv6(ctx context.Context, sb *netns.NS, ifName string) error {
	explain.Say(ctx, "%s", sb.Shell("sysctl -w net.ipv6.conf."+strings.ReplaceAll(ifName, ".", "/")+".disable_ipv6=1"))
	if _, err := sb.Sysctl("net/ipv6/conf/"+ifName+"/disable_ipv6", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("turning IPv6 off on %s in %s: %w", ifName, sb, err)
	}
	return nil
}

// loUp brings the loopback interface up; it is ifindex 1 in every namespace.
func loUp(ctx context.Context, sb *netns.NS, nl *netlink.Handle) error {
	explain.Say(ctx, "%s", sb.Shell("ip link set lo up"))
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}
	if err := nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing lo up in %s: %w", sb, err)
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is6() {
		return "-6 "
	}
	return ""
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
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
