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
	// ProxyARPWiFi: the bridge answers ARP requests for the addresses it
	// knows behind the port, and floods none it answered to it (see
	// proxy.go).
	ProxyARPWiFi PortFlag = "proxy_arp_wifi"
)

// SetPortFlag turns flag on for port, a link in ns that is a port of a bridge.
//
// Equivalent to: bridge link set dev PORT FLAG on
// (proxy_arp_wifi: ip link set dev PORT type bridge_slave proxy_arp_wifi on)
func SetPortFlag(ctx context.Context, ns *netns.NS, port string, flag PortFlag) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	link, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("finding bridge port %s in %s: %w", port, ns, err)
	}
	return SetPortFlagLink(ctx, ns, h, link, flag, true)
}

// SetPortFlagLink turns flag on or off for link, a bridge port the caller
// has looked up through h (a handle bound to ns).
//
// Equivalent to: bridge link set dev PORT FLAG on|off
// (proxy_arp_wifi: ip link set dev PORT type bridge_slave proxy_arp_wifi on|off)
func SetPortFlagLink(ctx context.Context, ns *netns.NS, h *netlink.Handle, link netlink.Link, flag PortFlag, on bool) error {
	var set func(*netlink.Handle, netlink.Link, bool) error
	cmd := fmt.Sprintf("bridge link set dev %s %s %s", link.Attrs().Name, flag, onOff(on))
	switch flag {
	case Hairpin:
		set = (*netlink.Handle).LinkSetHairpin
	case Isolated:
		set = (*netlink.Handle).LinkSetIsolated
	case ProxyARPWiFi:
		// `bridge link` has no keyword for it; `ip link` has.
		set = (*netlink.Handle).LinkSetBrProxyArpWiFi
		cmd = fmt.Sprintf("ip link set dev %s type bridge_slave proxy_arp_wifi %s", link.Attrs().Name, onOff(on))
	default:
		return fmt.Errorf("bridge port flag %q: %w", flag, errkind.Invalid)
	}
	explain.Say(ctx, "%s", ns.Shell(cmd))
	if err := set(h, link, on); err != nil {
		return fmt.Errorf("setting %s %s on bridge port %s in %s: %w", flag, onOff(on), link.Attrs().Name, ns, err)
	}
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// In reports whether flag is on in a port's flags, as PortFlags reads them.
func (flag PortFlag) In(pi netlink.Protinfo) bool {
	switch flag {
	case Hairpin:
		return pi.Hairpin
	case Isolated:
		return pi.Isolated
	case ProxyARPWiFi:
		return pi.ProxyArpWiFi
	}
	return false
}
