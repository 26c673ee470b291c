package macvlan

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

// ownerAlias marks a VLAN sub-interface this package created (ip link show
// prints it as "alias sandnet"), so only those are ever deleted.
const ownerAlias = "sandnet"

// EnsureVLAN makes sure the 802.1Q sub-interface name ("eth0.50": VLAN 50
// on eth0) exists in host and is up, creating it if missing. It reports
// whether it created it; a created one is marked as sandnet's (its alias)
// so that DeleteVLAN removes it and nothing else. The base link must exist
// and be up (ErrParentNotFound, ErrParentDown); an existing link of that
// name that is not that VLAN is ErrExists.
//
// Equivalent to: ip link add link BASE name NAME type vlan id VID; ip link set NAME alias sandnet up
func EnsureVLAN(ctx context.Context, host *netns.NS, name string) (created bool, err error) {
	base, vid, ok, err := SplitVLAN(name)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("%q does not name a VLAN (want LINK.VID, e.g. eth0.50): %w", name, ErrInvalid)
	}
	nl, err := host.Netlink()
	if err != nil {
		return false, err
	}
	parent, err := Parent(host, base)
	if err != nil {
		return false, err
	}
	link, err := nl.LinkByName(name)
	if err == nil {
		v, isVLAN := link.(*netlink.Vlan)
		if !isVLAN || v.VlanId != vid || v.ParentIndex != parent.Attrs().Index {
			return false, fmt.Errorf("link %s exists in %s and is not VLAN %d on %s: %w", name, host, vid, base, ErrExists)
		}
	} else {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return false, fmt.Errorf("looking up VLAN %s in %s: %w", name, host, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.ParentIndex = parent.Attrs().Index
		explain.Say(ctx, "%s", host.Shell(fmt.Sprintf("ip link add link %s name %s type vlan id %d", base, name, vid)))
		if err := nl.LinkAdd(&netlink.Vlan{LinkAttrs: attrs, VlanId: vid}); errors.Is(err, unix.EOPNOTSUPP) {
			return false, fmt.Errorf("creating VLAN %s in %s: the kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q, module 8021q): %w", name, host, err)
		} else if err != nil && !errors.Is(err, unix.EEXIST) {
			return false, fmt.Errorf("creating VLAN %s in %s: %w", name, host, err)
		} else if err == nil {
			created = true
		}
		if link, err = nl.LinkByName(name); err != nil {
			return false, fmt.Errorf("finding the new VLAN %s in %s: %w", name, host, err)
		}
		if created {
			explain.Say(ctx, "%s", host.Shell(fmt.Sprintf("ip link set %s alias %s", name, ownerAlias)))
			if err := nl.LinkSetAlias(link, ownerAlias); err != nil {
				nl.LinkDel(link)
				return false, fmt.Errorf("marking VLAN %s in %s as sandnet's: %w", name, host, err)
			}
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		explain.Say(ctx, "%s", host.Shell("ip link set "+name+" up"))
		if err := nl.LinkSetUp(link); err != nil {
			if created {
				nl.LinkDel(link)
			}
			return false, fmt.Errorf("bringing VLAN %s up in %s: %w", name, host, err)
		}
	}
	return created, nil
}

// DeleteVLAN removes the VLAN sub-interface name if EnsureVLAN created it
// (it carries sandnet's alias); one the user made stays. A VLAN that is gone
// is not an error. The macvlan devices on it go with it.
//
// Equivalent to: ip link del NAME
func DeleteVLAN(ctx context.Context, host *netns.NS, name string) error {
	nl, err := host.Netlink()
	if err != nil {
		return err
	}
	link, err := nl.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("deleting VLAN %s in %s: %w", name, host, err)
	}
	if _, ok := link.(*netlink.Vlan); !ok || link.Attrs().Alias != ownerAlias {
		return nil
	}
	explain.Say(ctx, "%s", host.Shell("ip link del "+name))
	if err := nl.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting VLAN %s in %s: %w", name, host, err)
	}
	return nil
}

// OwnsVLAN reports whether the link called name in host is a VLAN that
// EnsureVLAN created.
func OwnsVLAN(host *netns.NS, name string) bool {
	nl, err := host.Netlink()
	if err != nil {
		return false
	}
	link, err := nl.LinkByName(name)
	if err != nil {
		return false
	}
	_, ok := link.(*netlink.Vlan)
	return ok && link.Attrs().Alias == ownerAlias
}
