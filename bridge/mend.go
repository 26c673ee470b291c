package bridge

import (
	"context"
	"fmt"
	"net"

	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

// VethPort is a sandbox's veth pair plugged into a bridge: the host end
// Name, a port of Bridge in the host namespace, and its peer IfName in
// the namespace Sandbox.
type VethPort struct {
	Bridge  string
	Name    string
	Sandbox *netns.NS
	IfName  string
}

// MendVethPort puts back what is missing of p, then on each end what is
// missing of setup: the pair itself, both ends, if either is gone (half a
// pair cannot be mended: what is left goes, and create makes the pair
// again, after which the sandbox's lo comes up too); the host end up and
// on the bridge (AddPort); the sandbox end's addresses and routes
// (iface.Link.Configure, with Fresh set on a new pair). A link called
// IfName in the sandbox that is not a veth is not touched (ErrExists). It
// reports whether it made a new pair.
func MendVethPort(ctx context.Context, host *netns.NS, p VethPort, create func() error, setup iface.Setup) (made bool, err error) {
	nl, err := host.Netlink()
	if err != nil {
		return false, err
	}
	br, err := nl.LinkByName(p.Bridge)
	if err != nil {
		return false, fmt.Errorf("finding bridge %s in %s: %w", p.Bridge, host, err)
	}
	hostLink, herr := nl.LinkByName(p.Name)
	sbLink, serr := iface.Open(p.Sandbox, p.IfName)
	made = herr != nil || serr != nil
	if made {
		if err := veth.Delete(ctx, host, p.Name); err != nil {
			return false, err
		}
		if serr == nil {
			if kind := sbLink.Kind(); kind != "veth" {
				return false, fmt.Errorf("sandbox %s has a %s called %s, not sandnet's veth: %w", p.Sandbox, kind, p.IfName, ErrExists)
			}
			if err := veth.Delete(ctx, p.Sandbox, p.IfName); err != nil {
				return false, err
			}
		}
		if err := create(); err != nil {
			return false, err
		}
		if hostLink, err = nl.LinkByName(p.Name); err != nil {
			return true, err
		}
		if sbLink, err = iface.Open(p.Sandbox, p.IfName); err != nil {
			return true, err
		}
		if err := iface.LoUp(ctx, p.Sandbox); err != nil {
			return true, err
		}
	}
	if hostLink.Attrs().MasterIndex != br.Attrs().Index || hostLink.Attrs().Flags&net.FlagUp == 0 {
		if err := AddPort(ctx, host, p.Bridge, p.Name); err != nil {
			return made, err
		}
	}
	setup.Fresh = made
	return made, sbLink.Configure(ctx, setup)
}
