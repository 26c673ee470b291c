package iface

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// Sentinel errors, shared with the rest of sandnet.
var (
	ErrInvalid  = errkind.Invalid
	ErrExists   = errkind.Exists
	ErrNotFound = errkind.NotFound
)

// Up brings the link called name up in ns.
//
// Equivalent to: ip link set NAME up
func Up(ctx context.Context, ns *netns.NS, name string) error {
	l, err := find(ns, name)
	if err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return l.Up(ctx)
}

// AddAddr puts address p (with its prefix length, e.g. 10.88.0.2/24) on the
// link called name in ns. The kernel adds the connected route for p's subnet
// by itself. IPv6 addresses skip duplicate address detection, so they are
// usable at once. An address already on the link is success.
//
// Equivalent to: ip addr add P dev NAME [nodad]
func AddAddr(ctx context.Context, ns *netns.NS, name string, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("adding address to %s: invalid prefix: %w", name, ErrInvalid)
	}
	l, err := find(ns, name)
	if err != nil {
		return fmt.Errorf("adding %s to %s: %w", p, name, err)
	}
	return l.AddAddr(ctx, p)
}

// DelAddr removes address p from the link called name in ns. An address or
// link that is gone is success.
//
// Equivalent to: ip addr del P dev NAME
func DelAddr(ctx context.Context, ns *netns.NS, name string, p netip.Prefix) error {
	l, err := find(ns, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s from %s: %w", p, name, err)
	}
	explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("ip addr del %s dev %s", p, name)))
	if err := l.h.AddrDel(l.link, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("removing %s from %s in %s: %w", p, name, ns, err)
	}
	return nil
}

// Route is one route in the main table.
type Route struct {
	// Dst is the destination; 0.0.0.0/0 (or ::/0) is the default route.
	Dst netip.Prefix `json:"dst"`
	// Via is the gateway, the next hop; invalid for a route straight out of Dev.
	Via netip.Addr `json:"via,omitzero"`
	// Dev is the link the route goes out of; "" lets the kernel find it from Via.
	Dev string `json:"dev,omitempty"`
}

// String is the route as `ip route` writes it: "default via 10.88.0.1 dev eth0".
func (r Route) String() string {
	s := r.Dst.String()
	if r.Dst.Bits() == 0 {
		s = "default"
	}
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

func (r Route) family() string {
	if r.Dst.Addr().Is6() {
		return "-6 "
	}
	return ""
}

// AddRoute adds r to the main table of ns. The same route already there is
// success; a different route to the same destination is an error wrapping
// ErrExists.
//
// Equivalent to: ip route add DST [via GW] [dev NAME]
func AddRoute(ctx context.Context, ns *netns.NS, r Route) error {
	h, nr, err := toNetlink(ns, r)
	if err != nil {
		return fmt.Errorf("adding route %s: %w", r, err)
	}
	return addRoute(ctx, ns, h, r, nr)
}

func addRoute(ctx context.Context, ns *netns.NS, h *netlink.Handle, r Route, nr *netlink.Route) error {
	explain.Say(ctx, "%s", ns.Shell("ip "+r.family()+"route add "+r.String()))
	err := h.RouteAdd(nr)
	if errors.Is(err, unix.EEXIST) {
		if same, lerr := present(h, nr); lerr == nil && same {
			return nil
		}
		return fmt.Errorf("adding route %s in %s: another route to %s is there: %w", r, ns, r.Dst, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("adding route %s in %s: %w", r, ns, err)
	}
	return nil
}

// DelRoute removes r from the main table of ns. A route that is gone is success.
//
// Equivalent to: ip route del DST [via GW] [dev NAME]
func DelRoute(ctx context.Context, ns *netns.NS, r Route) error {
	h, nr, err := toNetlink(ns, r)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing route %s: %w", r, err)
	}
	explain.Say(ctx, "%s", ns.Shell("ip "+r.family()+"route del "+r.String()))
	if err := h.RouteDel(nr); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("removing route %s in %s: %w", r, ns, err)
	}
	return nil
}

func toNetlink(ns *netns.NS, r Route) (*netlink.Handle, *netlink.Route, error) {
	nr, err := toNetlinkRoute(r)
	if err != nil {
		return nil, nil, err
	}
	h, err := ns.Netlink()
	if err != nil {
		return nil, nil, err
	}
	if r.Dev != "" {
		l, err := find(ns, r.Dev)
		if err != nil {
			return nil, nil, err
		}
		nr.LinkIndex = l.link.Attrs().Index
	}
	return h, nr, nil
}

func toNetlinkRoute(r Route) (*netlink.Route, error) {
	if !r.Dst.IsValid() || (r.Via.IsValid() && r.Via.Is6() != r.Dst.Addr().Is6()) || (!r.Via.IsValid() && r.Dev == "") {
		return nil, fmt.Errorf("route needs a destination and a gateway or device of its family: %w", ErrInvalid)
	}
	nr := &netlink.Route{Dst: ipNet(r.Dst.Masked()), Table: unix.RT_TABLE_MAIN}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	}
	return nr, nil
}

// present reports whether a route equal to r (destination, gateway and, if
// given, device) is in the main table.
func present(h *netlink.Handle, r *netlink.Route) (bool, error) {
	fam := netlink.FAMILY_V4
	if r.Dst.IP.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return false, err
	}
	want := r.Dst.String()
	for _, have := range routes {
		dst := "0.0.0.0/0"
		if fam == netlink.FAMILY_V6 {
			dst = "::/0"
		}
		if have.Dst != nil {
			dst = have.Dst.String()
		}
		if dst == want && have.Gw.Equal(r.Gw) && (r.LinkIndex == 0 || have.LinkIndex == r.LinkIndex) {
			return true, nil
		}
	}
	return false, nil
}

// find looks name up with the namespace's full netlink handle.
func find(ns *netns.NS, name string) (*Link, error) {
	h, err := ns.Netlink()
	if err != nil {
		return nil, err
	}
	return lookup(ns, h, name)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
