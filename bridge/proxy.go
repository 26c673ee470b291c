package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// Answering address resolution on the bridge.
//
// A bridge floods every ARP request (a broadcast) and every IPv4 or IPv6
// multicast it has no member list for to all of its ports. With a thousand
// sandboxes that is a thousand copies of each request, each queued on the
// CPU's backlog (net.core.netdev_max_backlog, 1000 by default), and the
// answer is dropped with them. The bridge can answer instead, from the
// neighbour table of the bridge device, for a port flagged proxy_arp_wifi:
//
//   - an ARP request from any port whose target address has a valid entry
//     in the bridge device's neighbour table, whose MAC the bridge's FDB
//     places on a proxy_arp_wifi port, is answered by the bridge out of the
//     port it came in by;
//   - that request is then not flooded to any proxy_arp_wifi port;
//   - a request for any other address is flooded as before, so addresses
//     the bridge does not know (set by hand inside a sandbox, a macvlan on
//     top of one) still resolve.
//
// neigh_suppress (IFLA_BRPORT_NEIGH_SUPPRESS), which looks made for this,
// does not fit a bridge whose every port is a sandbox: the kernel (checked
// on 6.18) never answers a request that arrives on a neigh_suppress port,
// and floods it to every port. It is meant for the VXLAN port of an EVPN
// bridge, whose requests come from far away; and only it answers IPv6
// neighbour solicitations, so those are left to the bridge's multicast
// flooding (see the root package for what sandnet does about IPv6).
//
// The answer needs three things per sandbox: the port flag (SetPortFlag
// with ProxyARPWiFi), a
// neighbour entry on the bridge device (iface.SetNeighbor), and an FDB
// entry for the sandbox's MAC on its port (AddFDB; a learned one ages out
// after five minutes of silence, and then the request is flooded again).

// PortFlags reads the flags of the bridge port called port (hairpin,
// isolated, proxy_arp_wifi, neigh_suppress, learning, flood...). A link
// that is no bridge port is an error wrapping ErrNotFound.
//
// Equivalent to: ip -d link show PORT (its bridge_slave flags)
func PortFlags(ns *netns.NS, port string) (netlink.Protinfo, error) {
	_, link, err := portLink(ns, port)
	if err != nil {
		return netlink.Protinfo{}, err
	}
	if link.Attrs().MasterIndex == 0 {
		return netlink.Protinfo{}, fmt.Errorf("%s in %s is not a bridge port: %w", port, ns, ErrNotFound)
	}
	data, err := linkData(ns, link.Attrs().Index, true)
	if err != nil {
		return netlink.Protinfo{}, fmt.Errorf("reading the flags of bridge port %s in %s: %w", port, ns, err)
	}
	return protinfo(data), nil
}

// AddFDB puts a static entry for mac on the bridge port called port into
// its bridge's forwarding database: frames to mac go to that port, and the
// entry does not age out while the port lives (the kernel removes it with
// the port). A learned entry for mac is replaced.
//
// Equivalent to: bridge fdb replace MAC dev PORT master static
func AddFDB(ctx context.Context, ns *netns.NS, port string, mac net.HardwareAddr) error {
	h, link, err := portLink(ns, port)
	if err != nil {
		return err
	}
	return AddFDBIndex(ctx, ns, h, link.Attrs().Index, port, mac)
}

// AddFDBIndex is AddFDB for a caller that holds ns's netlink handle and
// the port's index already; port is used for the explanation and errors.
//
// Equivalent to: bridge fdb replace MAC dev PORT master static
func AddFDBIndex(ctx context.Context, ns *netns.NS, h *netlink.Handle, index int, port string, mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("adding fdb entry %s on %s: %w", mac, port, ErrInvalid)
	}
	explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("bridge fdb replace %s dev %s master static", mac, port)))
	if err := h.NeighSet(fdbEntry(index, mac)); err != nil {
		return fmt.Errorf("adding fdb entry %s on bridge port %s in %s: %w", mac, port, ns, err)
	}
	return nil
}

// DelFDB removes the static entry for mac from the bridge port called
// port. A missing entry or port is success.
//
// Equivalent to: bridge fdb del MAC dev PORT master
func DelFDB(ctx context.Context, ns *netns.NS, port string, mac net.HardwareAddr) error {
	h, link, err := portLink(ns, port)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("bridge fdb del %s dev %s master", mac, port)))
	if err := h.NeighDel(fdbEntry(link.Attrs().Index, mac)); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting fdb entry %s on bridge port %s in %s: %w", mac, port, ns, err)
	}
	return nil
}

// HasStaticFDB reports whether the bridge's forwarding database holds a
// static entry for mac on the port called port.
//
// Equivalent to: bridge fdb show dev PORT | grep 'MAC .* static'
func HasStaticFDB(ns *netns.NS, port string, mac net.HardwareAddr) (bool, error) {
	h, link, err := portLink(ns, port)
	if err != nil {
		return false, err
	}
	idx := link.Attrs().Index
	list, err := nlwrap.Retry(func() ([]netlink.Neigh, error) { return h.NeighList(idx, unix.AF_BRIDGE) })
	if err != nil {
		return false, fmt.Errorf("listing fdb entries of %s in %s: %w", port, ns, err)
	}
	for _, n := range list {
		if n.LinkIndex == idx && bytes.Equal(n.HardwareAddr, mac) && staticEntry(n) {
			return true, nil
		}
	}
	return false, nil
}

func fdbEntry(index int, mac net.HardwareAddr) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, State: netlink.NUD_NOARP, HardwareAddr: mac}
}

func portLink(ns *netns.NS, port string) (*netlink.Handle, netlink.Link, error) {
	h, err := ns.Netlink()
	if err != nil {
		return nil, nil, err
	}
	link, err := h.LinkByName(port)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil, fmt.Errorf("bridge port %s in %s: %w", port, ns, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("finding bridge port %s in %s: %w", port, ns, err)
	}
	return h, link, nil
}

// protinfo reads a port's flags from its IFLA_BRPORT_* attributes.
func protinfo(infos []syscall.NetlinkRouteAttr) netlink.Protinfo {
	var pi netlink.Protinfo
	flags := map[uint16]*bool{
		nl.IFLA_BRPORT_MODE: &pi.Hairpin, nl.IFLA_BRPORT_GUARD: &pi.Guard, nl.IFLA_BRPORT_FAST_LEAVE: &pi.FastLeave,
		nl.IFLA_BRPORT_PROTECT: &pi.RootBlock, nl.IFLA_BRPORT_LEARNING: &pi.Learning, nl.IFLA_BRPORT_UNICAST_FLOOD: &pi.Flood,
		nl.IFLA_BRPORT_PROXYARP: &pi.ProxyArp, nl.IFLA_BRPORT_PROXYARP_WIFI: &pi.ProxyArpWiFi, nl.IFLA_BRPORT_ISOLATED: &pi.Isolated,
		nl.IFLA_BRPORT_NEIGH_SUPPRESS: &pi.NeighSuppress, nl.IFLA_BRPORT_VLAN_TUNNEL: &pi.VlanTunnel,
	}
	for _, a := range infos {
		if f := flags[a.Attr.Type]; f != nil && len(a.Value) > 0 {
			*f = a.Value[0] == 1
		}
	}
	return pi
}
