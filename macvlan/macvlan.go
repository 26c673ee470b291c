package macvlan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/netns"
)

// Sentinel errors, shared with the rest of sandnet.
var (
	ErrInvalid  = errkind.Invalid
	ErrExists   = errkind.Exists
	ErrNotFound = errkind.NotFound
	ErrInUse    = errkind.InUse
)

// Errors about the parent link. Each also matches a general kind:
// ErrParentNotFound is ErrNotFound, ErrParentDown is ErrInvalid.
var (
	ErrParentNotFound = fmt.Errorf("parent link not found: %w", ErrNotFound)
	ErrParentDown     = fmt.Errorf("parent link is down: %w", ErrInvalid)
)

// The modes, as iproute2 spells them.
const (
	ModeBridge   = "bridge"
	ModePrivate  = "private"
	ModeVEPA     = "vepa"
	ModePassthru = "passthru"
)

var modes = map[string]netlink.MacvlanMode{
	ModeBridge:   netlink.MACVLAN_MODE_BRIDGE,
	ModePrivate:  netlink.MACVLAN_MODE_PRIVATE,
	ModeVEPA:     netlink.MACVLAN_MODE_VEPA,
	ModePassthru: netlink.MACVLAN_MODE_PASSTHRU,
}

// CheckMode returns an error wrapping ErrInvalid unless mode is "" (bridge)
// or one of the four modes.
func CheckMode(mode string) error {
	if _, ok := modes[mode]; !ok && mode != "" {
		return fmt.Errorf("macvlan mode %q: want bridge, private, vepa or passthru: %w", mode, ErrInvalid)
	}
	return nil
}

// Link describes a macvlan device to create. Zero values mean defaults.
type Link struct {
	// Name of the device where it lives; default "eth0".
	Name string
	// Parent is the link in the host namespace the device hangs off. Required.
	Parent string
	// NS is the namespace the device is created in (a sandbox); nil means the
	// host namespace itself (the host's own macvlan, see the package doc).
	NS *netns.NS
	// Mode is bridge (default), private, vepa or passthru.
	Mode string
	// MAC of the device; nil lets the kernel choose (passthru takes the parent's).
	MAC net.HardwareAddr
	// MTU; 0 takes the parent's.
	MTU int
}

// Create makes the macvlan device on Parent (a link of host), directly in
// l.NS under its final name: the kernel creates it there in one request, so
// it never shows up in the host under another name. It returns the device as
// seen from its namespace. A missing parent is ErrParentNotFound, one that
// is down ErrParentDown, a name taken in l.NS ErrExists, and a parent taken
// by a passthru device (or a passthru device on a parent in use) ErrInUse.
//
// Equivalent to: ip link add NAME link PARENT [address MAC] [mtu M] netns NS type macvlan mode MODE
func Create(ctx context.Context, host *netns.NS, l Link) (netlink.Link, error) {
	if l.Name == "" {
		l.Name = "eth0"
	}
	if l.Mode == "" {
		l.Mode = ModeBridge
	}
	if err := errors.Join(ifname.Check(l.Name), CheckMode(l.Mode)); err != nil {
		return nil, fmt.Errorf("macvlan %q: %w", l.Name, err)
	}
	if l.MTU < 0 || l.MTU > 65535 {
		return nil, fmt.Errorf("macvlan %q: mtu %d out of range: %w", l.Name, l.MTU, ErrInvalid)
	}
	target := l.NS
	if target == nil {
		target = host
	}
	hnl, err := host.Netlink()
	if err != nil {
		return nil, err
	}
	parent, err := Parent(host, l.Parent)
	if err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = l.Name
	attrs.ParentIndex = parent.Attrs().Index
	attrs.MTU = l.MTU
	attrs.HardwareAddr = l.MAC
	if !target.Equal(host) {
		attrs.Namespace = netlink.NsFd(target.Fd())
	}
	dev := &netlink.Macvlan{LinkAttrs: attrs, Mode: modes[l.Mode]}
	explain.Say(ctx, "%s", host.Shell(command(l, target, host)))
	if err := hnl.LinkAdd(dev); err != nil {
		what := fmt.Sprintf("creating macvlan %s on %s in %s", l.Name, l.Parent, target)
		switch {
		case errors.Is(err, unix.EEXIST) && nameTaken(target, l.Name):
			return nil, fmt.Errorf("%s: %w", what, ErrExists)
		case errors.Is(err, unix.EINVAL) && l.MTU > parent.Attrs().MTU:
			return nil, fmt.Errorf("%s: mtu %d exceeds the parent's %d: %w", what, l.MTU, parent.Attrs().MTU, ErrInvalid)
		case errors.Is(err, unix.EEXIST), errors.Is(err, unix.EBUSY), errors.Is(err, unix.EINVAL):
			// The kernel's answers when a passthru device holds the parent, or
			// when a passthru device is asked for on a parent already in use.
			return nil, fmt.Errorf("%s: the parent is taken (a passthru device allows no other on its parent): %w", what, ErrInUse)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	tnl, err := target.Netlink()
	if err != nil {
		return nil, err
	}
	link, err := tnl.LinkByName(l.Name)
	if err != nil {
		return nil, fmt.Errorf("finding the new macvlan %s in %s: %w", l.Name, target, err)
	}
	return link, nil
}

func nameTaken(ns *netns.NS, name string) bool {
	nl, err := ns.Netlink()
	if err != nil {
		return false
	}
	_, err = nl.LinkByName(name)
	return err == nil
}

func command(l Link, target, host *netns.NS) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ip link add %s link %s", l.Name, l.Parent)
	if l.MAC != nil {
		fmt.Fprintf(&b, " address %s", l.MAC)
	}
	if l.MTU > 0 {
		fmt.Fprintf(&b, " mtu %d", l.MTU)
	}
	if !target.Equal(host) {
		if target.Name() != "" {
			fmt.Fprintf(&b, " netns %s", target.Name())
		} else {
			fmt.Fprintf(&b, " netns %s", target.Path())
		}
	}
	fmt.Fprintf(&b, " type macvlan mode %s", l.Mode)
	return b.String()
}

// Parent returns the link called name in host, checking that it can carry
// macvlan devices: it exists (else ErrParentNotFound) and is up (else
// ErrParentDown).
func Parent(host *netns.NS, name string) (netlink.Link, error) {
	if err := ifname.Check(name); err != nil {
		return nil, fmt.Errorf("macvlan parent: %w", err)
	}
	nl, err := host.Netlink()
	if err != nil {
		return nil, err
	}
	link, err := nl.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("parent %s in %s: %w", name, host, ErrParentNotFound)
		}
		return nil, fmt.Errorf("looking up parent %s in %s: %w", name, host, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("parent %s in %s (bring it up: ip link set %s up): %w", name, host, name, ErrParentDown)
	}
	return link, nil
}

// Delete removes the macvlan device called name in ns. A device that is
// gone is not an error; a link of that name that is not a macvlan is left
// alone and reported (ErrExists): it is not this package's.
//
// Equivalent to: ip link del NAME
func Delete(ctx context.Context, ns *netns.NS, name string) error {
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	link, err := nl.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("deleting macvlan %s in %s: %w", name, ns, err)
	}
	if _, ok := link.(*netlink.Macvlan); !ok {
		return fmt.Errorf("deleting macvlan %s in %s: it is a %s, not a macvlan: %w", name, ns, link.Type(), ErrExists)
	}
	explain.Say(ctx, "%s", ns.Shell("ip link del "+name))
	if err := nl.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting macvlan %s in %s: %w", name, ns, err)
	}
	return nil
}

// SplitVLAN reads a parent name the way Docker does: "eth0.50" is VLAN 50 on
// eth0. ok is false for a name without a numeric suffix (a plain link, even
// with a dot, such as "br.lan"); a numeric suffix outside 1-4094 is ErrInvalid.
func SplitVLAN(parent string) (base string, vid int, ok bool, err error) {
	i := strings.LastIndexByte(parent, '.')
	if i <= 0 || i == len(parent)-1 {
		return parent, 0, false, nil
	}
	n, convErr := strconv.Atoi(parent[i+1:])
	if convErr != nil || strings.ContainsAny(parent[i+1:], "+-") {
		return parent, 0, false, nil
	}
	if n < 1 || n > 4094 {
		return "", 0, false, fmt.Errorf("parent %q: VLAN id %d out of range 1-4094: %w", parent, n, ErrInvalid)
	}
	return parent[:i], n, true, nil
}
