package iface

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// Link is one link of a namespace, looked up once: its methods act on it
// with no further lookup. Open uses the namespace's route-only netlink
// handle (netns.NS.RouteNetlink), the cheapest to open, which is what a
// sandbox being plugged in needs.
type Link struct {
	ns   *netns.NS
	h    *netlink.Handle
	link netlink.Link
}

// Open finds the link called name in ns (ErrNotFound if there is none).
func Open(ns *netns.NS, name string) (*Link, error) {
	h, err := ns.RouteNetlink()
	if err != nil {
		return nil, err
	}
	return lookup(ns, h, name)
}

// Wrap makes a Link of link, a link of ns that the caller has looked up
// through h (a handle bound to ns), so its methods need no lookup.
func Wrap(ns *netns.NS, h *netlink.Handle, link netlink.Link) *Link {
	return &Link{ns: ns, h: h, link: link}
}

// Index is the link's interface index.
func (l *Link) Index() int { return l.link.Attrs().Index }

// MAC is the link's hardware address.
func (l *Link) MAC() net.HardwareAddr { return l.link.Attrs().HardwareAddr }

func lookup(ns *netns.NS, h *netlink.Handle, name string) (*Link, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("link %s in %s: %w", name, ns, ErrNotFound)
		}
		return nil, fmt.Errorf("finding link %s in %s: %w", name, ns, err)
	}
	return &Link{ns: ns, h: h, link: link}, nil
}

// Name is the link's name.
func (l *Link) Name() string { return l.link.Attrs().Name }

// Kind is the link's type: "veth", "bridge", "macvlan"...
func (l *Link) Kind() string { return l.link.Type() }

// IsUp reports whether the link was up when it was looked up.
func (l *Link) IsUp() bool { return l.link.Attrs().Flags&net.FlagUp != 0 }

// Up brings the link up.
//
// Equivalent to: ip link set NAME up
func (l *Link) Up(ctx context.Context) error {
	explain.Say(ctx, "%s", l.ns.Shell("ip link set "+l.Name()+" up"))
	if err := l.h.LinkSetUp(l.link); err != nil {
		return fmt.Errorf("bringing %s up in %s: %w", l.Name(), l.ns, err)
	}
	return nil
}

// LoUp brings the loopback interface of ns up; it is ifindex 1 in every
// namespace, so no lookup is needed.
//
// Equivalent to: ip link set lo up
func LoUp(ctx context.Context, ns *netns.NS) error {
	h, err := ns.RouteNetlink()
	if err != nil {
		return err
	}
	lo := &Link{ns: ns, h: h, link: &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}}
	return lo.Up(ctx)
}

// AddAddr puts address p (with its prefix length) on the link; see the
// package function AddAddr.
//
// Equivalent to: ip addr add P dev NAME [nodad]
func (l *Link) AddAddr(ctx context.Context, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("adding address to %s: invalid prefix: %w", l.Name(), ErrInvalid)
	}
	a := &netlink.Addr{IPNet: ipNet(p)}
	extra := ""
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
		extra = " nodad"
	}
	explain.Say(ctx, "%s", l.ns.Shell(fmt.Sprintf("ip addr add %s dev %s%s", p, l.Name(), extra)))
	if err := l.h.AddrAdd(l.link, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding %s to %s in %s: %w", p, l.Name(), l.ns, err)
	}
	return nil
}

// Addrs lists the link's addresses.
//
// Equivalent to: ip addr show dev NAME
func (l *Link) Addrs() ([]netip.Prefix, error) {
	addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return l.h.AddrList(l.link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", l.Name(), err)
	}
	var ps []netip.Prefix
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ones, _ := a.Mask.Size()
			ps = append(ps, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return ps, nil
}

// AddRoute adds r, out of this link (r.Dev is ignored), to the main table;
// the same route already there is success.
//
// Equivalent to: ip route add DST [via GW] dev NAME
func (l *Link) AddRoute(ctx context.Context, r Route) error {
	r.Dev = l.Name()
	nr, err := toNetlinkRoute(r)
	if err != nil {
		return fmt.Errorf("adding route %s: %w", r, err)
	}
	nr.LinkIndex = l.link.Attrs().Index
	return addRoute(ctx, l.ns, l.h, r, nr)
}

// HasRoute reports whether r (destination and gateway) goes out of the link.
//
// Equivalent to: ip route show dev NAME
func (l *Link) HasRoute(r Route) (bool, error) {
	fam := netlink.FAMILY_V4
	if r.Dst.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return l.h.RouteList(l.link, fam) })
	if err != nil {
		return false, fmt.Errorf("listing routes of %s: %w", l.Name(), err)
	}
	for _, x := range routes {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if fam == netlink.FAMILY_V6 {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if x.Dst != nil {
			a, _ := netip.AddrFromSlice(x.Dst.IP)
			ones, _ := x.Dst.Mask.Size()
			dst = netip.PrefixFrom(a.Unmap(), ones)
		}
		gw, _ := netip.AddrFromSlice(x.Gw)
		if dst == r.Dst.Masked() && gw.Unmap() == r.Via {
			return true, nil
		}
	}
	return false, nil
}

// SetConf sets the link's per-interface setting key of family ("ipv4" or
// "ipv6") to value, inside the link's namespace, if it differs. A dot in the
// link's name stays a dot in the /proc/sys path and is written '/' in
// sysctl's dotted form (eth0.50: net/ipv6/conf/eth0.50/..., sysctl
// net.ipv6.conf.eth0/50....). A setting the kernel does not have (no IPv6)
// or a link that is gone is an error wrapping fs.ErrNotExist.
//
// Equivalent to: sysctl -w net.FAMILY.conf.NAME.KEY=VALUE
func (l *Link) SetConf(ctx context.Context, family, key, value string) error {
	name := l.Name()
	explain.Say(ctx, "%s", l.ns.Shell("sysctl -w net."+family+".conf."+strings.ReplaceAll(name, ".", "/")+"."+key+"="+value))
	if _, err := l.ns.Sysctl("net/"+family+"/conf/"+name+"/"+key, value); err != nil {
		return fmt.Errorf("setting %s of %s in %s: %w", key, name, l.ns, err)
	}
	return nil
}

// Lacks returns those of addrs the link does not carry and those of routes
// that do not go out of it (HasRoute); on an error, what it found so far.
//
// Equivalent to: ip addr show dev NAME; ip route show dev NAME
func (l *Link) Lacks(addrs []netip.Prefix, routes []Route) (noAddrs []netip.Prefix, noRoutes []Route, err error) {
	have, err := l.Addrs()
	if err != nil {
		return nil, nil, err
	}
	for _, p := range addrs {
		if !slices.Contains(have, p) {
			noAddrs = append(noAddrs, p)
		}
	}
	for _, r := range routes {
		ok, err := l.HasRoute(r)
		if err != nil {
			return noAddrs, noRoutes, err
		}
		if !ok {
			noRoutes = append(noRoutes, r)
		}
	}
	return noAddrs, noRoutes, nil
}
