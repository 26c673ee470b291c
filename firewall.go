package sandnet

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/nat"
)

// The bridge driver's firewall steps: masquerade, forwarding, isolation and
// published ports, done by the Host's nat.Backend; and the host settings
// they need (forwarding, route_localnet on the bridge, bridge port
// isolation for NoICC networks).

// Firewall is the backend installing the Host's firewall rules.
func (h *Host) Firewall() nat.Backend { return h.fw }

func natNetwork(n *Network) nat.Network {
	return nat.Network{Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet, Subnet6: n.Subnet6, Internal: n.Internal, NoICC: n.NoICC, Routed: n.Routed, ClusterCIDR: n.ClusterCIDR}
}

func natEndpoint(ep *Endpoint, ports []PortMapping) nat.Endpoint {
	return nat.Endpoint{ID: ep.ID, Sandbox: ep.SandboxID, Addr: ep.Addr(false), Addr6: ep.Addr(true), Ports: ports}
}

// sysctl sets key in the host namespace if it differs, reporting the command.
func (h *Host) sysctl(ctx context.Context, key, value string) (bool, error) {
	changed, err := h.ns.Sysctl(key, value)
	if changed {
		explain.Say(ctx, "%s", h.ns.Shell("sysctl -w "+key+"="+value))
	}
	return changed, err
}

// ensureNetworkRules prepares the host for a bridge network and installs
// its rules. Forwarding is turned on (host-wide, only for networks that go
// out, only if off) and recorded in rec.HostChanges, never reverted.
// route_localnet is set on the network's bridge only, so the host can reach
// ports published on 127.0.0.1 (the rules guard it against outside use).
func (h *Host) ensureNetworkRules(ctx context.Context, rec *networkRecord) error {
	n := &rec.Network
	var sets []string
	if !n.Internal && n.Subnet.IsValid() {
		sets = append(sets, "net.ipv4.ip_forward")
	}
	if !n.Internal && n.Subnet6.IsValid() {
		sets = append(sets, "net.ipv6.conf.all.forwarding")
	}
	if n.Subnet.IsValid() {
		sets = append(sets, "net/ipv4/conf/"+n.Bridge+"/route_localnet")
	}
	for _, key := range sets {
		changed, err := h.sysctl(ctx, key, "1")
		if err != nil {
			return fmt.Errorf("enabling %s for network %q: %w", key, n.Name, err)
		}
		if changed && (!rec.OwnsBridge || key[:4] != "net/") {
			rec.HostChanges = append(rec.HostChanges, key+"=1")
			h.log.Info("changed a host setting", "setting", key+"=1", "network", n.Name)
		}
	}
	if err := h.fw.EnsureNetwork(ctx, natNetwork(n)); err != nil {
		return errors.Join(err, h.fw.RemoveNetwork(context.WithoutCancel(ctx), natNetwork(n)))
	}
	return nil
}

func (h *Host) removeNetworkRules(ctx context.Context, rec *networkRecord) error {
	return h.fw.RemoveNetwork(ctx, natNetwork(&rec.Network))
}

// addEndpointRules isolates the endpoint's bridge port on a NoICC network
// and publishes its ports: host ports are claimed in the Host's port table
// (conflicts are *nat.PortConflictError), then the rules are added. On
// failure nothing is left behind.
func (h *Host) addEndpointRules(ctx context.Context, rec *networkRecord, ep *Endpoint, ports []PortMapping) error {
	n := &rec.Network
	if brNetfilter(h) {
		// Bridged frames go through iptables: a sandbox reaching its own
		// published port is DNATed back out of the port it came in by, so
		// the port needs hairpin mode; ICC is enforced by the FORWARD rules,
		// and port isolation would also stop a sibling's hairpin traffic.
		if err := h.setPort(ctx, ep.HostIfName, "hairpin", (*netlink.Handle).LinkSetHairpin); err != nil {
			return err
		}
	} else if n.NoICC {
		// Bridged frames never reach iptables: isolate the port at L2.
		if err := h.setPort(ctx, ep.HostIfName, "isolated", (*netlink.Handle).LinkSetIsolated); err != nil {
			return err
		}
	}
	if len(ports) == 0 {
		return nil
	}
	claimed, err := h.claimPorts(ctx, ep, ports, func(ps []PortMapping) error {
		return nat.Validate(natNetwork(n), natEndpoint(ep, ps))
	})
	if err != nil {
		return err
	}
	if err := h.fw.AddEndpoint(ctx, natNetwork(n), natEndpoint(ep, claimed)); err != nil {
		ctx := context.WithoutCancel(ctx)
		return errors.Join(err,
			h.fw.RemoveEndpoint(ctx, natNetwork(n), natEndpoint(ep, claimed)),
			h.releasePorts(ctx, ep, claimed))
	}
	ep.Ports = claimed
	return nil
}

// removeEndpointRules removes the endpoint's published ports, if it has
// any. Its record lists them from the moment they are claimed, also when an
// attach died half-way.
func (h *Host) removeEndpointRules(ctx context.Context, rec *networkRecord, ep *Endpoint) error {
	if len(ep.Ports) == 0 {
		return nil
	}
	if err := h.fw.RemoveEndpoint(ctx, natNetwork(&rec.Network), natEndpoint(ep, ep.Ports)); err != nil {
		return err
	}
	return h.releasePorts(ctx, ep, ep.Ports)
}

// brNetfilter reports whether bridged IPv4 traffic of the host namespace
// goes through iptables (the br_netfilter module is loaded and
// net.bridge.bridge-nf-call-iptables is 1 there). sandnet never changes it.
func brNetfilter(h *Host) bool {
	v, err := h.ns.ReadSysctl("net.bridge.bridge-nf-call-iptables")
	return err == nil && v == "1"
}

// setPort turns a bridge port flag on for a host-side veth: "isolated"
// (isolated ports cannot talk to each other but still reach the bridge
// itself: the host, the gateway, published ports) or "hairpin" (frames may
// leave by the port they came in by).
//
// Equivalent to: bridge link set dev PORT isolated on (or hairpin on)
func (h *Host) setPort(ctx context.Context, port, flag string, set func(*netlink.Handle, netlink.Link, bool) error) error {
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	link, err := nl.LinkByName(port)
	if err != nil {
		return fmt.Errorf("finding bridge port %s in %s: %w", port, h.ns, err)
	}
	explain.Say(ctx, "%s", h.ns.Shell("bridge link set dev "+port+" "+flag+" on"))
	if err := set(nl, link, true); err != nil {
		return fmt.Errorf("setting %s on bridge port %s in %s: %w", flag, port, h.ns, err)
	}
	return nil
}
