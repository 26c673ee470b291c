package bridge

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

// LocalnetKey is the route_localnet setting of the bridge called name: on,
// the kernel lets 127.0.0.0/8 cross it both ways, which a host's packets to
// 127.0.0.1 need when they are DNATed out of the bridge (a port published
// on 127.0.0.1); the caller guards what sandboxes send to 127.0.0.0/8.
func LocalnetKey(name string) string { return "net/ipv4/conf/" + name + "/route_localnet" }

// SetLocalnet turns the bridge's route_localnet on or off, if it differs.
// A bridge that is gone has nothing to turn off.
//
// Equivalent to: sysctl -w net.ipv4.conf.NAME.route_localnet=1|0
func SetLocalnet(ctx context.Context, ns *netns.NS, name string, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	changed, err := ns.Sysctl(LocalnetKey(name), v)
	if changed {
		explain.Say(ctx, "%s", ns.Shell("sysctl -w "+LocalnetKey(name)+"="+v))
	}
	if err != nil && !on && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("setting %s: %w", LocalnetKey(name), err)
	}
	return nil
}

// WantedFlags are the flags a port of a bridge in ns must have; noICC says
// its sandboxes must not reach each other. Where bridged traffic goes
// through netfilter (br_netfilter loaded and
// net.bridge.bridge-nf-call-iptables / -ip6tables = 1, which sandnet never
// changes), a sandbox reaching its own published port is DNATed back out
// of the port it came in by, so the port needs hairpin mode, and the
// FORWARD rules enforce ICC. Where a family's bridged frames bypass
// netfilter, a noICC bridge isolates its ports at L2; that holds for every
// family at once, so it is needed unless both settings are on (with only
// the IPv4 one on, IPv6 went from sandbox to sandbox). Isolation also stops
// a sandbox's hairpin traffic (an isolated port does not deliver to
// itself), so with it a noICC bridge's sandboxes do not reach their own
// published ports through a host address.
func WantedFlags(ns *netns.NS, noICC bool) []PortFlag {
	nf := func(key string) bool { v, err := ns.ReadSysctl(key); return err == nil && v == "1" }
	nf4, nf6 := nf("net.bridge.bridge-nf-call-iptables"), nf("net.bridge.bridge-nf-call-ip6tables")
	switch {
	case noICC && !(nf4 && nf6):
		return []PortFlag{Isolated}
	case nf4 || nf6:
		return []PortFlag{Hairpin}
	}
	return nil
}

// SetPortFlags turns each of flags on for port, a bridge port in ns.
func SetPortFlags(ctx context.Context, ns *netns.NS, port string, flags []PortFlag) error {
	for _, f := range flags {
		if err := SetPortFlag(ctx, ns, port, f); err != nil {
			return err
		}
	}
	return nil
}

// SetPortFlagsLink is SetPortFlags for link, a bridge port that the caller
// has looked up through h (a handle bound to ns): no lookup.
func SetPortFlagsLink(ctx context.Context, ns *netns.NS, h *netlink.Handle, link netlink.Link, flags []PortFlag) error {
	for _, f := range flags {
		if err := SetPortFlagLink(ctx, ns, h, link, f, true); err != nil {
			return err
		}
	}
	return nil
}
