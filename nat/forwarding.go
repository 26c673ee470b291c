package nat

import (
	"context"
	"errors"
	"fmt"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

// ForwardingKeys are the host-wide settings network n needs: forwarding,
// for each family it has, unless it is internal (it goes nowhere).
func ForwardingKeys(n Network) []string {
	var keys []string
	if !n.Internal && n.Subnet.IsValid() {
		keys = append(keys, "net.ipv4.ip_forward")
	}
	if !n.Internal && n.Subnet6.IsValid() {
		keys = append(keys, "net.ipv6.conf.all.forwarding")
	}
	return keys
}

// EnableForwarding turns each of ForwardingKeys(n) on in ns where it is off
// and returns those it changed (host-wide changes the caller reports; it
// never turns them off again).
//
// Equivalent to: sysctl -w net.ipv4.ip_forward=1 (and IPv6's)
func EnableForwarding(ctx context.Context, ns *netns.NS, n Network) (changed []string, err error) {
	for _, key := range ForwardingKeys(n) {
		c, err := ns.Sysctl(key, "1")
		if c {
			explain.Say(ctx, "%s", ns.Shell("sysctl -w "+key+"=1"))
			changed = append(changed, key)
		}
		if err != nil {
			return changed, fmt.Errorf("enabling %s for network %q: %w", key, n.Name, err)
		}
	}
	return changed, nil
}

// Install prepares the host namespace ns for network n (EnableForwarding)
// and has b install n's rules; if that fails, what b installed goes again.
// It returns the host settings it changed, which are never reverted, also
// on failure.
func Install(ctx context.Context, ns *netns.NS, b Backend, n Network) (changed []string, err error) {
	if changed, err = EnableForwarding(ctx, ns, n); err != nil {
		return changed, err
	}
	if err := b.EnsureNetwork(ctx, n); err != nil {
		return changed, errors.Join(err, b.RemoveNetwork(context.WithoutCancel(ctx), n))
	}
	return changed, nil
}
