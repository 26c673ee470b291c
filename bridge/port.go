package bridge

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/netns"
)

// PortFlag is a flag of a bridge port.
type PortFlag string

const (
	// Hairpin lets frames leave by the port they came in by.
	Hairpin PortFlag = "hairpin"
	// Isolated ports cannot talk to each other, but still reach the bridge
	// itself (the host, the gateway, ports published there).
	Isolated PortFlag = "isolated"
)

// SetPortFlag turns flag on for port, a link in ns that is a port of a bridge.
//
// Equivalent to: bridge link set dev PORT FLAG on
func SetPortFlag(ctx context.Context, ns *netns.NS, port string, flag PortFlag) error {
	var set func(*netlink.Handle, netlink.Link, bool) error
	switch flag {
	case Hairpin:
		set = (*netlink.Handle).LinkSetHairpin
	case Isolated:
		set = (*netlink.Handle).LinkSetIsolated
	default:
		return fmt.Errorf("bridge port flag %q: %w", flag, errkind.Invalid)
	}
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	link, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("finding bridge port %s in %s: %w", port, ns, err)
	}
	explain.Say(ctx, "%s", ns.Shell("bridge link set dev "+port+" "+string(flag)+" on"))
	if err := set(h, link, true); err != nil {
		return fmt.Errorf("setting %s on bridge port %s in %s: %w", flag, port, ns, err)
	}
	return nil
}
