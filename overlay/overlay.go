package overlay

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

// DefaultPort is the IANA port for VXLAN.
const DefaultPort = 4789

// Overhead is what VXLAN adds to each frame over an IPv4 underlay: outer
// IPv4 (20), UDP (8), VXLAN (8) and the inner Ethernet header (14).
// Overhead6 is the same over IPv6 (40-byte outer header).
const (
	Overhead  = 50
	Overhead6 = 70
)

// MTU is the largest MTU an overlay can have over an underlay link of MTU
// underlayMTU without fragmenting: the underlay's minus the VXLAN overhead.
func MTU(underlayMTU int, v6 bool) int {
	if v6 {
		return underlayMTU - Overhead6
	}
	return underlayMTU - Overhead
}

// Device describes a VXLAN device. Zero values mean defaults.
type Device struct {
	// Name of the device. Required, ≤ 15 bytes.
	Name string
	// VNI is the VXLAN network identifier, 1 to 16777215: every host of one
	// overlay uses the same.
	VNI uint32
	// Port is the UDP destination port; default 4789.
	Port int
	// Local is this host's underlay address, the source of the UDP packets.
	// Required; it must be on a link of the namespace.
	Local netip.Addr
	// MTU of the device; 0 means the underlay link's MTU minus the overhead.
	MTU int
	// Master is the bridge the device becomes a port of; "" for none.
	Master string
	// Learning fills the FDB from received frames (source MAC -> sending
	// host), so unicast goes straight to the right peer after the first
	// exchange. Off, only AddMAC entries do that and the rest is flooded.
	Learning bool
}

func (d *Device) defaults() error {
	if d.Port == 0 {
		d.Port = DefaultPort
	}
	switch {
	case ifname.Check(d.Name) != nil:
		return fmt.Errorf("vxlan: %w", ifname.Check(d.Name))
	case d.VNI < 1 || d.VNI > 1<<24-1:
		return fmt.Errorf("vxlan %s: VNI %d out of range 1-16777215: %w", d.Name, d.VNI, ErrInvalid)
	case d.Port < 1 || d.Port > 65535:
		return fmt.Errorf("vxlan %s: port %d out of range: %w", d.Name, d.Port, ErrInvalid)
	case !d.Local.IsValid() || d.Local.IsUnspecified():
		return fmt.Errorf("vxlan %s: no local underlay address: %w", d.Name, ErrInvalid)
	case d.MTU < 0 || d.MTU > 65535:
		return fmt.Errorf("vxlan %s: mtu %d out of range: %w", d.Name, d.MTU, ErrInvalid)
	}
	return nil
}

// UnderlayLink returns the link of ns that carries addr: the physical
// network the overlay rides on. No such link is ErrNotFound.
func UnderlayLink(ns *netns.NS, addr netip.Addr) (netlink.Link, error) {
	nl, err := ns.Netlink()
	if err != nil {
		return nil, err
	}
	addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("listing addresses in %s: %w", ns, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr.Unmap() {
			l, err := nl.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("finding the link of %s in %s: %w", addr, ns, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("underlay address %s is not on any link in %s: %w", addr, ns, ErrNotFound)
}

// Ensure creates the VXLAN device if it is missing (or adopts one of that
// name with the same VNI and port), makes it a port of Master and brings it
// up. It returns the device and whether it created it. A link of that name
// that is something else is ErrExists; so is a device for the same VNI and
// port that already exists under another name (the kernel refuses two).
//
// Equivalent to: ip link add NAME [mtu M] type vxlan id VNI dstport PORT local LOCAL dev UNDERLAY [nolearning];
// ip link set NAME master BRIDGE up
func Ensure(ctx context.Context, ns *netns.NS, d Device) (link *netlink.Vxlan, created bool, err error) {
	if err := d.defaults(); err != nil {
		return nil, false, err
	}
	nl, err := ns.Netlink()
	if err != nil {
		return nil, false, err
	}
	link, err = lookup(nl, d.Name)
	if errors.Is(err, ErrNotFound) {
		link, err = create(ctx, ns, nl, d)
		created = err == nil
	}
	if err != nil {
		return nil, false, err
	}
	if link.VxlanId != int(d.VNI) || link.Port != d.Port {
		return nil, false, fmt.Errorf("vxlan %s exists in %s with VNI %d port %d, not VNI %d port %d: %w", d.Name, ns, link.VxlanId, link.Port, d.VNI, d.Port, ErrExists)
	}
	undo := func() {
		if created {
			nl.LinkDel(link)
		}
	}
	if d.Master != "" {
		br, err := nl.LinkByName(d.Master)
		if err != nil {
			undo()
			return nil, false, fmt.Errorf("vxlan %s: bridge %s in %s: %w", d.Name, d.Master, ns, err)
		}
		if link.MasterIndex != br.Attrs().Index {
			explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("ip link set %s master %s", d.Name, d.Master)))
			if err := nl.LinkSetMasterByIndex(link, br.Attrs().Index); err != nil {
				undo()
				return nil, false, fmt.Errorf("attaching vxlan %s to bridge %s in %s: %w", d.Name, d.Master, ns, err)
			}
		}
	}
	if link.Flags&net.FlagUp == 0 {
		explain.Say(ctx, "%s", ns.Shell("ip link set "+d.Name+" up"))
		if err := nl.LinkSetUp(link); err != nil {
			undo()
			return nil, false, fmt.Errorf("bringing vxlan %s up in %s: %w", d.Name, ns, err)
		}
	}
	return link, created, nil
}

func create(ctx context.Context, ns *netns.NS, nl *netlink.Handle, d Device) (*netlink.Vxlan, error) {
	under, err := UnderlayLink(ns, d.Local)
	if err != nil {
		return nil, fmt.Errorf("creating vxlan %s: %w", d.Name, err)
	}
	max := MTU(under.Attrs().MTU, d.Local.Is6() && !d.Local.Is4In6())
	if d.MTU == 0 {
		d.MTU = max
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = d.Name
	attrs.MTU = d.MTU
	vx := &netlink.Vxlan{
		LinkAttrs:    attrs,
		VxlanId:      int(d.VNI),
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      d.Local.AsSlice(),
		Port:         d.Port,
		Learning:     d.Learning,
	}
	learn := ""
	if !d.Learning {
		learn = " nolearning"
	}
	explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("ip link add %s mtu %d type vxlan id %d dstport %d local %s dev %s%s",
		d.Name, d.MTU, d.VNI, d.Port, d.Local, under.Attrs().Name, learn)))
	if err := nl.LinkAdd(vx); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating vxlan %s in %s: a device for VNI %d port %d (or that name) exists already: %w", d.Name, ns, d.VNI, d.Port, ErrExists)
		}
		return nil, fmt.Errorf("creating vxlan %s in %s: %w", d.Name, ns, err)
	}
	return lookup(nl, d.Name)
}

func lookup(nl *netlink.Handle, name string) (*netlink.Vxlan, error) {
	l, err := nl.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("vxlan %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("looking up vxlan %s: %w", name, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("link %s exists and is a %s, not a vxlan: %w", name, l.Type(), ErrExists)
	}
	return vx, nil
}

// Delete removes the VXLAN device called name, and with it its FDB. A
// device that is gone is not an error.
//
// Equivalent to: ip link del NAME
func Delete(ctx context.Context, ns *netns.NS, name string) error {
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	vx, err := lookup(nl, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	explain.Say(ctx, "%s", ns.Shell("ip link del "+name))
	if err := nl.LinkDel(vx); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting vxlan %s in %s: %w", name, ns, err)
	}
	return nil
}

// bridgeCmd renders a `bridge` command as a user would run it inside ns.
func bridgeCmd(ns *netns.NS, cmd string) string {
	if ns.Name() != "" {
		return "bridge -n " + ns.Name() + " " + cmd
	}
	return ns.Shell("bridge " + cmd)
}
