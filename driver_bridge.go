package sandnet

import (
	"context"
	"errors"
	"net/netip"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/veth"
)

// bridgeDriver is Docker's default: a veth pair from the sandbox to a bridge
// in the host namespace that carries the gateway address.
type bridgeDriver struct{}

func init() { drivers[DriverBridge] = bridgeDriver{} }

func (bridgeDriver) createNetwork(ctx context.Context, h *Host, rec *networkRecord) (undoStack, error) {
	var undo undoStack
	n := &rec.Network
	var addrs []netip.Prefix
	if n.Gateway.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))
	}
	if n.Gateway6.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits()))
	}
	_, created, err := bridge.Ensure(ctx, h.ns, bridge.Config{Name: n.Bridge, MTU: n.MTU, Addrs: addrs})
	if err != nil {
		return nil, err
	}
	if created {
		rec.OwnsBridge = true
		undo.push(func(ctx context.Context) error { return bridge.Delete(ctx, h.ns, n.Bridge) })
	}
	if err := h.ensureQuerier(ctx, rec); err != nil {
		return nil, errors.Join(err, undo.run(ctx))
	}
	if err := h.ensureNetworkRules(ctx, rec); err != nil {
		return nil, errors.Join(err, undo.run(ctx))
	}
	undo.push(func(ctx context.Context) error { return h.removeNetworkRules(ctx, rec) })
	return undo, nil
}

func (bridgeDriver) removeNetwork(ctx context.Context, h *Host, rec *networkRecord) error {
	err := h.removeNetworkRules(ctx, rec)
	if rec.OwnsBridge {
		err = errors.Join(err, bridge.Delete(ctx, h.ns, rec.Network.Bridge))
	}
	return err
}

func (bridgeDriver) attach(ctx context.Context, tx *attachTx) error {
	h, n, ep := tx.h, &tx.net.Network, tx.ep
	if err := tx.allocate(ctx); err != nil {
		return err
	}
	ep.Bridge = n.Bridge
	ep.HostIfName = ifname.Derive("snv", ep.ID)
	ep.MTU = n.MTU
	if err := tx.step(ctx, StepLink, func() error {
		nl, err := h.ns.Netlink()
		if err != nil {
			return err
		}
		br, err := nl.LinkByName(n.Bridge)
		if err != nil {
			return err
		}
		mac := tx.opts.MAC
		if mac == nil {
			mac = macFor(ep.Addresses)
		}
		pair := veth.Pair{
			Name: ep.HostIfName, PeerName: ep.IfName, PeerNS: tx.sb, MTU: n.MTU, PeerMAC: mac,
			Master: br.Attrs().Index, MasterName: n.Bridge, Up: true,
		}
		_, err = veth.Create(ctx, h.ns, pair)
		if errors.Is(err, ErrExists) {
			// The name is derived from this endpoint's ID, whose claim we
			// hold: the veth is a leftover of an earlier attach of the same
			// endpoint (detached with SandboxGoing while its namespace
			// lived on, or a crash). Replace it.
			if l, lerr := nl.LinkByName(ep.HostIfName); lerr == nil && l.Type() == "veth" {
				if err = veth.Delete(ctx, h.ns, ep.HostIfName); err == nil {
					_, err = veth.Create(ctx, h.ns, pair)
				}
			}
		}
		if err != nil {
			return err
		}
		tx.undo.push(func(ctx context.Context) error { return veth.Delete(ctx, h.ns, ep.HostIfName) })
		if mac != nil {
			ep.MAC = mac.String()
		}
		return nil
	}); err != nil {
		return err
	}
	if err := tx.configureSandbox(ctx); err != nil {
		return err
	}
	if err := tx.answerNeighbors(ctx); err != nil {
		return err
	}
	if err := tx.step(ctx, StepDNS, func() error { return h.setupDNS(ctx, tx) }); err != nil {
		return err
	}
	return tx.step(ctx, StepPorts, func() error {
		if err := h.addEndpointRules(ctx, tx.net, ep, tx.opts.Ports); err != nil {
			return err
		}
		tx.undo.push(func(ctx context.Context) error { return h.removeEndpointRules(ctx, tx.net, ep) })
		return nil
	})
}

func (bridgeDriver) detach(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint) error {
	hostIf := ep.HostIfName
	if hostIf == "" { // an attach that died before recording it: the name is derived
		hostIf = ifname.Derive("snv", ep.ID)
	}
	err := errors.Join(
		h.removeEndpointRules(ctx, rec, ep),
		h.teardownDNS(ctx, rec, ep),
		h.forgetNeighbors(ctx, &rec.Network, ep),
	)
	if sandboxGoing(ctx) {
		// The namespace's deletion removes the pair; a leftover is replaced
		// by the next attach of this endpoint (see StepLink).
		explain.Say(ctx, "# %s: left to the kernel, which removes it with the sandbox namespace", hostIf)
		return err
	}
	return errors.Join(err, veth.Delete(ctx, h.ns, hostIf))
}
