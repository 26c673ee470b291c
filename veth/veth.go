package veth

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	ErrInvalid = errkind.Invalid
	ErrExists  = errkind.Exists
)

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h): the
// interface makes no IPv6 link-local address of its own.
const addrGenModeNone = 1

// Pair describes a veth pair to create. Zero values mean defaults.
type Pair struct {
	// Name of the end that stays in the host namespace. Required, ≤ 15 bytes.
	Name string
	// PeerName is the name of the end inside PeerNS; default "eth0".
	PeerName string
	// PeerNS is the namespace the peer is created in. Required.
	PeerNS *netns.NS
	// MTU of both ends; 0 leaves the kernel default (1500).
	MTU int
	// PeerMAC is the peer's MAC address; nil lets the kernel choose.
	PeerMAC net.HardwareAddr
	// Master, if set, is the index of a bridge in the host namespace that the
	// host end joins as it is created. A bridge port carries no address of
	// its own, so the host end then gets no IPv6 link-local address either
	// (addrgenmode none): it sends no duplicate address detection, MLD
	// report or router solicitation, which the bridge would flood to every
	// other port, a cost that grows with the number of ports.
	Master int
	// MasterName is the bridge's name, for the explanation only.
	MasterName string
	// Up brings the host end up as it is created.
	Up bool
}

func (p *Pair) defaults() error {
	if p.PeerName == "" {
		p.PeerName = "eth0"
	}
	if p.PeerNS == nil {
		return fmt.Errorf("veth %q: no peer namespace: %w", p.Name, ErrInvalid)
	}
	if err := errors.Join(ifname.Check(p.Name), ifname.Check(p.PeerName)); err != nil {
		return fmt.Errorf("veth %q: %w", p.Name, err)
	}
	if p.MTU < 0 || p.MTU > 65535 {
		return fmt.Errorf("veth %q: mtu %d out of range: %w", p.Name, p.MTU, ErrInvalid)
	}
	return nil
}

// Create makes the pair: Name in host, PeerName in PeerNS, in one netlink
// request (plus one to join the bridge and one to turn off IPv6
// link-local addressing on the host end, when there is a Master). It
// returns the host end. An existing link called Name in host
// yields an error wrapping ErrExists.
//
// Equivalent to: ip link add NAME [mtu M] [master BR] [up] type veth peer name PEER [address MAC] netns NS
// (then, with a master: ip link set NAME addrgenmode none)
func Create(ctx context.Context, host *netns.NS, p Pair) (netlink.Link, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	h, err := host.Netlink()
	if err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = p.Name
	attrs.MTU = p.MTU
	attrs.MasterIndex = p.Master
	if p.Up {
		attrs.Flags = net.FlagUp
	}
	link := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         p.PeerName,
		PeerHardwareAddr: p.PeerMAC,
		PeerNamespace:    netlink.NsFd(p.PeerNS.Fd()),
	}
	if p.MTU > 0 {
		link.PeerMTU = uint32(p.MTU)
	}
	explain.Say(ctx, "%s", host.Shell(command(p)))
	if err := h.LinkAdd(link); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating veth %s (peer %s in %s): %w", p.Name, p.PeerName, p.PeerNS, ErrExists)
		}
		return nil, fmt.Errorf("creating veth %s (peer %s in %s): %w", p.Name, p.PeerName, p.PeerNS, err)
	}
	if p.Master != 0 {
		// Before the peer comes up: until it has a carrier, the host end
		// has no IPv6 address to detect or report.
		explain.Say(ctx, "%s", host.Shell("ip link set "+p.Name+" addrgenmode none"))
		if err := h.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, errors.Join(fmt.Errorf("setting addrgenmode none on %s: %w", p.Name, err), h.LinkDel(link))
		}
	}
	return link, nil
}

func command(p Pair) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ip link add %s", p.Name)
	if p.MTU > 0 {
		fmt.Fprintf(&b, " mtu %d", p.MTU)
	}
	if p.MasterName != "" {
		fmt.Fprintf(&b, " master %s", p.MasterName)
	}
	if p.Up {
		b.WriteString(" up")
	}
	fmt.Fprintf(&b, " type veth peer name %s", p.PeerName)
	if p.MTU > 0 {
		fmt.Fprintf(&b, " mtu %d", p.MTU)
	}
	if p.PeerMAC != nil {
		fmt.Fprintf(&b, " address %s", p.PeerMAC)
	}
	if p.PeerNS.Name() != "" {
		fmt.Fprintf(&b, " netns %s", p.PeerNS.Name())
	} else {
		fmt.Fprintf(&b, " netns %s", p.PeerNS.Path())
	}
	return b.String()
}

// Delete removes the veth called name in ns, and with it its peer. A link
// that is already gone is not an error.
//
// Equivalent to: ip link del NAME
func Delete(ctx context.Context, ns *netns.NS, name string) error {
	// A handle of its own: the deletion keeps its socket for the ~16 ms the
	// kernel takes, and concurrent deletions then overlap instead of
	// queueing on a shared handle.
	h, err := ns.OwnNetlink()
	if err != nil {
		return err
	}
	defer h.Close()
	explain.Say(ctx, "%s", ns.Shell("ip link del "+name))
	link, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("deleting veth %s in %s: %w", name, ns, err)
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting veth %s in %s: %w", name, ns, err)
	}
	return nil
}
