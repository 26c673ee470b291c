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

// Overlap is what a namespace has (Have) inside, or overlapping, a prefix
// asked about (Want).
type Overlap struct {
	Want netip.Prefix
	Have OnLink
}

// Overlaps looks for what ns has in the prefixes ps (zero ones are
// skipped) on links that ours does not claim: addr is the first of its
// addresses inside one (nil if none); only if there is none, routes are
// its routes (either family) that overlap one.
//
// Equivalent to: ip addr show; ip route show
func Overlaps(ns *netns.NS, ps []netip.Prefix, ours func(link string) bool) (addr *Overlap, routes []Overlap, err error) {
	addrs, err := AllAddrs(ns)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range addrs {
		for _, p := range ps {
			if !ours(a.Link) && p.IsValid() && p.Contains(a.Prefix.Addr()) {
				return &Overlap{p, a}, nil, nil
			}
		}
	}
	all, err := AllRoutes(ns, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range all {
		for _, p := range ps {
			if !ours(r.Link) && p.IsValid() && r.Prefix.IsValid() && p.Overlaps(r.Prefix) {
				routes = append(routes, Overlap{p, r})
			}
		}
	}
	return nil, routes, nil
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
