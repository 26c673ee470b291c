package iface

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// OnLink is an address, or a route's destination, in a namespace, with the
// name of the link it is on.
type OnLink struct {
	Prefix netip.Prefix
	Link   string
}

// AllAddrs lists every IPv4 and IPv6 address of ns with its link.
//
// Equivalent to: ip addr show
func AllAddrs(ns *netns.NS) ([]OnLink, error) {
	h, names, err := linkNames(ns)
	if err != nil {
		return nil, err
	}
	addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("listing addresses in %s: %w", ns, err)
	}
	var out []OnLink
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ones, _ := a.Mask.Size()
			out = append(out, OnLink{netip.PrefixFrom(ip.Unmap(), ones), names[a.LinkIndex]})
		}
	}
	return out, nil
}

// AllRoutes lists the destinations of the main-table routes of family
// (netlink.FAMILY_V4, FAMILY_V6 or FAMILY_ALL) in ns with their link,
// leaving out default routes.
//
// Equivalent to: ip route show
func AllRoutes(ns *netns.NS, family int) ([]OnLink, error) {
	h, names, err := linkNames(ns)
	if err != nil {
		return nil, err
	}
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return h.RouteList(nil, family) })
	if err != nil {
		return nil, fmt.Errorf("listing routes in %s: %w", ns, err)
	}
	var out []OnLink
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		dst, ok := netip.AddrFromSlice(r.Dst.IP)
		if ones, _ := r.Dst.Mask.Size(); ok && ones > 0 {
			out = append(out, OnLink{netip.PrefixFrom(dst.Unmap(), ones), names[r.LinkIndex]})
		}
	}
	return out, nil
}

// UplinkMTU is the MTU of the link of ns's IPv4 default route, else 1500.
func UplinkMTU(ns *netns.NS) int {
	h, err := ns.Netlink()
	if err != nil {
		return 1500
	}
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return 1500
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			if l, err := h.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU >= 68 {
				return l.Attrs().MTU
			}
		}
	}
	return 1500
}

// linkNames returns ns's netlink handle and its links' names by index.
func linkNames(ns *netns.NS) (*netlink.Handle, map[int]string, error) {
	h, err := ns.Netlink()
	if err != nil {
		return nil, nil, err
	}
	links, err := nlwrap.Retry(h.LinkList)
	if err != nil {
		return nil, nil, fmt.Errorf("listing links in %s: %w", ns, err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	return h, names, nil
}

// SourceTo is the source address the kernel of ns picks for packets to
// dst: the "src" of the route it would take. No route, or one without a
// source address, is an error.
//
// Equivalent to: ip route get DST
func SourceTo(ctx context.Context, ns *netns.NS, dst netip.Addr) (netip.Addr, error) {
	explain.Say(ctx, "%s", ns.Shell("ip route get "+dst.String()+"   # the src it shows"))
	h, err := ns.Netlink()
	if err != nil {
		return netip.Addr{}, err
	}
	routes, err := h.RouteGet(dst.AsSlice())
	if err != nil {
		return netip.Addr{}, err
	}
	if len(routes) > 0 {
		if src, ok := netip.AddrFromSlice(routes[0].Src); ok {
			return src.Unmap(), nil
		}
	}
	return netip.Addr{}, errors.New("the route has no source address")
}
