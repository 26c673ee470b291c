package iface

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// Neighbour entries are the kernel's address-resolution table (ARP for
// IPv4, neighbour discovery for IPv6) of one link. A permanent entry is
// never resolved, refreshed or expired: the kernel sends packets for that
// address to that MAC at once, without asking anyone. sandnet puts them
// where it knows both sides for the life of an endpoint: the gateway in the
// sandbox (its MAC is the bridge's, stable only on a bridge sandnet made,
// whose MAC it sets: an adopted bridge gets none) and each sandbox's
// addresses on the bridge device (the gateway side), so neither end
// broadcasts to find the other.

// SetNeighbor makes the entry for addr on the link called name in ns a
// permanent one pointing to mac, replacing what was there (a learned
// entry, or a permanent one with another MAC).
//
// Equivalent to: ip neigh replace ADDR lladdr MAC dev NAME nud permanent
func SetNeighbor(ctx context.Context, ns *netns.NS, name string, addr netip.Addr, mac net.HardwareAddr) error {
	l, err := find(ns, name)
	if err != nil {
		return fmt.Errorf("setting neighbour %s on %s: %w", addr, name, err)
	}
	return l.SetNeighbor(ctx, addr, mac)
}

// SetNeighbor makes the link's entry for addr a permanent one pointing to
// mac; see the package function SetNeighbor.
//
// Equivalent to: ip neigh replace ADDR lladdr MAC dev NAME nud permanent
func (l *Link) SetNeighbor(ctx context.Context, addr netip.Addr, mac net.HardwareAddr) error {
	addr = addr.Unmap()
	if !addr.IsValid() || len(mac) != 6 {
		return fmt.Errorf("setting neighbour %s lladdr %s on %s: %w", addr, mac, l.Name(), ErrInvalid)
	}
	explain.Say(ctx, "%s", l.ns.Shell(fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", addr, mac, l.Name())))
	n := &netlink.Neigh{LinkIndex: l.link.Attrs().Index, Family: family(addr), State: netlink.NUD_PERMANENT, IP: addr.AsSlice(), HardwareAddr: mac}
	if err := l.h.NeighSet(n); err != nil {
		return fmt.Errorf("setting neighbour %s lladdr %s on %s in %s: %w", addr, mac, l.Name(), l.ns, err)
	}
	return nil
}

// DelNeighbor removes the entry for addr on the link called name in ns. With
// a mac, only an entry that points to mac goes: one that points elsewhere
// belongs to whoever set it since (an address handed on to another
// sandbox), and checking costs a pass over the link's table. A missing
// entry or link is success.
//
// Equivalent to: ip neigh del ADDR dev NAME
func DelNeighbor(ctx context.Context, ns *netns.NS, name string, addr netip.Addr, mac net.HardwareAddr) error {
	l, err := find(ns, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting neighbour %s on %s: %w", addr, name, err)
	}
	return l.DelNeighbor(ctx, addr, mac)
}

// DelNeighbor removes the link's entry for addr; see the package function
// DelNeighbor.
//
// Equivalent to: ip neigh del ADDR dev NAME
func (l *Link) DelNeighbor(ctx context.Context, addr netip.Addr, mac net.HardwareAddr) error {
	addr = addr.Unmap()
	if mac != nil {
		have, err := l.neighbors(family(addr))
		if err != nil {
			return err
		}
		if e, ok := have[addr]; !ok || !bytes.Equal(e.MAC, mac) {
			return nil
		}
	}
	explain.Say(ctx, "%s", l.ns.Shell(fmt.Sprintf("ip neigh del %s dev %s", addr, l.Name())))
	n := &netlink.Neigh{LinkIndex: l.link.Attrs().Index, Family: family(addr), IP: addr.AsSlice()}
	if err := l.h.NeighDel(n); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting neighbour %s on %s in %s: %w", addr, l.Name(), l.ns, err)
	}
	return nil
}

// Neighbor is one entry of a link's neighbour table.
type Neighbor struct {
	Addr netip.Addr
	MAC  net.HardwareAddr
	// Permanent is true for an entry set by hand (nud permanent), false for
	// one the kernel learned and will expire.
	Permanent bool
}

// Neighbors lists the IPv4 and IPv6 neighbour entries of the link called
// name in ns, by address; entries without a MAC (still resolving, failed)
// are left out.
//
// Equivalent to: ip neigh show dev NAME
func Neighbors(ns *netns.NS, name string) (map[netip.Addr]Neighbor, error) {
	l, err := find(ns, name)
	if err != nil {
		return nil, fmt.Errorf("listing neighbours of %s: %w", name, err)
	}
	return l.Neighbors()
}

// Neighbors lists the link's neighbour entries; see the package function
// Neighbors.
//
// Equivalent to: ip neigh show dev NAME
func (l *Link) Neighbors() (map[netip.Addr]Neighbor, error) { return l.neighbors(netlink.FAMILY_ALL) }

func (l *Link) neighbors(fam int) (map[netip.Addr]Neighbor, error) {
	index := l.link.Attrs().Index
	list, err := nlwrap.Retry(func() ([]netlink.Neigh, error) { return l.h.NeighList(index, fam) })
	if err != nil {
		return nil, fmt.Errorf("listing neighbours of %s in %s: %w", l.Name(), l.ns, err)
	}
	m := make(map[netip.Addr]Neighbor, len(list))
	for _, n := range list {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || len(n.HardwareAddr) == 0 || n.LinkIndex != index {
			continue
		}
		m[a.Unmap()] = Neighbor{Addr: a.Unmap(), MAC: n.HardwareAddr, Permanent: n.State&netlink.NUD_PERMANENT != 0}
	}
	return m, nil
}

func family(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// Lacks says how n falls short of a permanent entry that points to want
// (nil: any MAC), "" if it does not; the zero Neighbor is a missing entry.
func (n Neighbor) Lacks(want net.HardwareAddr) string {
	switch {
	case !n.Addr.IsValid():
		return "missing"
	case !n.Permanent:
		return fmt.Sprintf("is a learned entry (%s), not a permanent one", n.MAC)
	case want != nil && !bytes.Equal(n.MAC, want):
		return fmt.Sprintf("points to %s, want %s", n.MAC, want)
	}
	return ""
}
