package bridge

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// Sentinel errors, shared with the rest of sandnet.
var (
	ErrInvalid  = errkind.Invalid
	ErrExists   = errkind.Exists
	ErrNotFound = errkind.NotFound
)

// Config describes a bridge. Zero values mean defaults.
type Config struct {
	// Name of the bridge device. Required, ≤ 15 bytes.
	Name string
	// MTU; 0 leaves the kernel's choice.
	MTU int
	// MAC is set explicitly so the bridge's address stays put as ports come
	// and go (a bridge otherwise takes the lowest MAC of its ports). Nil
	// derives a stable, locally administered MAC from Name.
	MAC net.HardwareAddr
	// Addrs are the gateway addresses to put on the bridge, e.g. 10.88.0.1/24.
	Addrs []netip.Prefix
	// NoMulticastSnooping makes the bridge with multicast snooping off
	// (an adopted bridge keeps its own setting). A bridge that no querier
	// serves floods multicast to every port, snooping or not (see
	// SetMulticastQuerier), but snooping costs the kernel work for every
	// live port whenever a port is added: it restarts each port's query
	// timers, which then all fire. With a thousand sandboxes, that was
	// 0.3-0.5 ms of each new sandbox's attach.
	NoMulticastSnooping bool
}

// Ensure creates the bridge if it is missing (or adopts an existing bridge of
// that name), makes sure it carries Addrs and is up, and returns it with
// whether it was created. A non-bridge link of that name is an error wrapping
// ErrExists.
//
// Equivalent to: ip link add NAME [mtu M] address MAC type bridge [mcast_snooping 0];
// ip addr add ADDR dev NAME; ip link set NAME up
func Ensure(ctx context.Context, ns *netns.NS, c Config) (link *netlink.Bridge, created bool, err error) {
	if err := ifname.Check(c.Name); err != nil {
		return nil, false, fmt.Errorf("bridge: %w", err)
	}
	h, err := ns.Netlink()
	if err != nil {
		return nil, false, err
	}
	link, err = lookup(h, c.Name)
	if errors.Is(err, ErrNotFound) {
		link, err = create(ctx, ns, h, c)
		created = err == nil
		if errors.Is(err, ErrExists) { // lost a race with another creator
			link, err = lookup(h, c.Name)
		}
	}
	if err != nil {
		return nil, false, err
	}
	undo := func() {
		if created {
			h.LinkDel(link)
		}
	}
	if err := ensureAddrs(ctx, ns, h, link, c.Addrs); err != nil {
		undo()
		return nil, false, err
	}
	if link.Flags&net.FlagUp == 0 {
		explain.Say(ctx, "%s", ns.Shell("ip link set "+c.Name+" up"))
		if err := h.LinkSetUp(link); err != nil {
			undo()
			return nil, false, fmt.Errorf("bringing bridge %s up in %s: %w", c.Name, ns, err)
		}
	}
	return link, created, nil
}

func lookup(h *netlink.Handle, name string) (*netlink.Bridge, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("bridge %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("looking up bridge %s: %w", name, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("link %s exists and is a %s, not a bridge: %w", name, l.Type(), ErrExists)
	}
	return br, nil
}

func create(ctx context.Context, ns *netns.NS, h *netlink.Handle, c Config) (*netlink.Bridge, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = c.Name
	attrs.MTU = c.MTU
	attrs.HardwareAddr = c.MAC
	if attrs.HardwareAddr == nil {
		attrs.HardwareAddr = StableMAC(c.Name)
	}
	br := &netlink.Bridge{LinkAttrs: attrs}
	opts := ""
	if c.MTU > 0 {
		opts = fmt.Sprintf(" mtu %d", c.MTU)
	}
	opts += fmt.Sprintf(" address %s type bridge", attrs.HardwareAddr)
	if c.NoMulticastSnooping {
		br.MulticastSnooping = new(bool)
		opts += " mcast_snooping 0"
	}
	explain.Say(ctx, "%s", ns.Shell("ip link add "+c.Name+opts))
	if err := h.LinkAdd(br); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating bridge %s in %s: %w", c.Name, ns, ErrExists)
		}
		return nil, fmt.Errorf("creating bridge %s in %s: %w", c.Name, ns, err)
	}
	return lookup(h, c.Name)
}

func ensureAddrs(ctx context.Context, ns *netns.NS, h *netlink.Handle, br *netlink.Bridge, want []netip.Prefix) error {
	for _, p := range want {
		addr := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("ip addr replace %s dev %s%s", p, br.Name, nodad(p))))
		if err := h.AddrReplace(br, addr); err != nil {
			return fmt.Errorf("adding address %s to bridge %s in %s: %w", p, br.Name, ns, err)
		}
	}
	return nil
}

// Delete removes the bridge called name; ports are released by the kernel.
// A bridge that is already gone is not an error.
//
// Equivalent to: ip link del NAME
func Delete(ctx context.Context, ns *netns.NS, name string) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	br, err := lookup(h, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	explain.Say(ctx, "%s", ns.Shell("ip link del "+name))
	if err := h.LinkDel(br); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting bridge %s in %s: %w", name, ns, err)
	}
	return nil
}

// AddPort attaches the link called port to the bridge and brings it up.
//
// Equivalent to: ip link set PORT master BRIDGE up
func AddPort(ctx context.Context, ns *netns.NS, bridgeName, port string) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	br, err := lookup(h, bridgeName)
	if err != nil {
		return err
	}
	l, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("attaching %s to bridge %s in %s: %w", port, bridgeName, ns, err)
	}
	explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("ip link set %s master %s up", port, bridgeName)))
	if err := h.LinkSetMasterByIndex(l, br.Index); err != nil {
		return fmt.Errorf("attaching %s to bridge %s in %s: %w", port, bridgeName, ns, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing %s up in %s: %w", port, ns, err)
	}
	return nil
}

// RemovePort detaches the link called port from whatever bridge holds it. A
// port that is gone or already detached is not an error.
//
// Equivalent to: ip link set PORT nomaster
func RemovePort(ctx context.Context, ns *netns.NS, port string) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	l, err := h.LinkByName(port)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("detaching %s in %s: %w", port, ns, err)
	}
	if l.Attrs().MasterIndex == 0 {
		return nil
	}
	explain.Say(ctx, "%s", ns.Shell("ip link set "+port+" nomaster"))
	if err := h.LinkSetNoMaster(l); err != nil {
		return fmt.Errorf("detaching %s in %s: %w", port, ns, err)
	}
	return nil
}

// Ports lists the names of the links attached to the bridge.
//
// Equivalent to: ip link show master BRIDGE
func Ports(ns *netns.NS, bridgeName string) ([]string, error) {
	h, err := ns.Netlink()
	if err != nil {
		return nil, err
	}
	br, err := lookup(h, bridgeName)
	if err != nil {
		return nil, err
	}
	links, err := nlwrap.Retry(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing ports of %s in %s: %w", bridgeName, ns, err)
	}
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Index {
			ports = append(ports, l.Attrs().Name)
		}
	}
	return ports, nil
}

// StableMAC derives a locally administered unicast MAC from name, so a bridge
// keeps one address for its whole life and across re-creation.
func StableMAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("sandnet-bridge/" + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func nodad(p netip.Prefix) string {
	if p.Addr().Is6() {
		return " nodad"
	}
	return ""
}
