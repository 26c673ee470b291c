package sandnet

import (
	"context"
	"errors"
	"fmt"

	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/macvlan"
	"github.com/sandnet/sandnet/netns"
)

// macvlanDriver puts each sandbox on the physical network: a macvlan device
// on the network's Parent link, born inside the sandbox as eth0 with its own
// MAC, an address from the segment's subnet and a default route via the
// segment's router (Network.Gateway). The host's bridge, NAT and published
// ports play no part.
//
// Limitation (the kernel's, as in Docker): the host cannot reach its own
// macvlan sandboxes through Parent. The workaround is a macvlan device for
// the host itself on Parent in bridge mode, with a route to the sandboxes
// through it (macvlan.Create with the host as namespace; see
// examples/macvlan).
type macvlanDriver struct{ noParts }

// DriverMacvlan puts each sandbox on the physical network: a macvlan device
// on Network.Parent with its own MAC, and an address of the segment's subnet.
const DriverMacvlan Driver = "macvlan"

func (macvlanDriver) traits() traits { return traits{ipam: true} }

func (macvlanDriver) setFields(n *Network) string {
	if n.Parent != "" || n.MacvlanMode != "" {
		return "parent and macvlan mode"
	}
	return ""
}

func (macvlanDriver) normalize(n *Network) error {
	if n.Parent == "" {
		return invalidf("network %q: a macvlan network needs a parent link (e.g. eth0, or eth0.50 for VLAN 50)", n.Name)
	}
	if err := ifname.Check(n.Parent); err != nil {
		return fmt.Errorf("network %q: parent: %w", n.Name, err)
	}
	if _, _, _, err := macvlan.SplitVLAN(n.Parent); err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	if n.MacvlanMode == "" {
		n.MacvlanMode = macvlan.ModeBridge
	}
	if err := macvlan.CheckMode(n.MacvlanMode); err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return checkBridgeName(n)
}

func (macvlanDriver) hostDefaults(_ *Host, n *Network) error { return needSubnet(n) }

func (macvlanDriver) createNetwork(ctx context.Context, h *Host, rec *networkRecord) (undoStack, error) {
	n := &rec.Network
	if err := checkParentUse(h, *n); err != nil {
		return nil, err
	}
	var undo undoStack
	if _, _, isVLAN, _ := macvlan.SplitVLAN(n.Parent); isVLAN {
		created, err := macvlan.EnsureVLAN(ctx, h.ns, n.Parent)
		if err != nil {
			return nil, err
		}
		if created {
			rec.OwnsBridge = true // the VLAN sub-interface, here
			undo.push(func(ctx context.Context) error { return macvlan.DeleteVLAN(ctx, h.ns, n.Parent) })
		}
	}
	parent, err := macvlan.Parent(h.ns, n.Parent)
	if err != nil {
		return nil, errors.Join(err, undo.run(ctx))
	}
	switch pmtu := parent.Attrs().MTU; {
	case n.MTU == 0:
		n.MTU = pmtu
	case n.MTU > pmtu:
		return nil, errors.Join(invalidf("network %q: mtu %d exceeds parent %s's mtu %d", n.Name, n.MTU, n.Parent, pmtu), undo.run(ctx))
	}
	return undo, nil
}

// checkParentUse refuses a parent that another macvlan network uses in
// another mode (or in passthru mode, which takes the parent whole).
func checkParentUse(h *Host, n Network) error {
	recs, err := h.st.Networks()
	if err != nil {
		return err
	}
	for _, r := range recs {
		o := r.Network
		if o.Name == n.Name || o.Driver != DriverMacvlan || o.Parent != n.Parent {
			continue
		}
		if o.MacvlanMode != n.MacvlanMode || n.MacvlanMode == macvlan.ModePassthru {
			return fmt.Errorf("network %q: parent %s is used by network %q in %s mode (want %s): %w",
				n.Name, n.Parent, o.Name, o.MacvlanMode, n.MacvlanMode, ErrInUse)
		}
	}
	return nil
}

func (macvlanDriver) removeNetwork(ctx context.Context, h *Host, rec *networkRecord) error {
	n := rec.Network
	if _, _, isVLAN, _ := macvlan.SplitVLAN(n.Parent); !isVLAN {
		return nil
	}
	// The VLAN goes when no other network uses it, whichever network created
	// it; DeleteVLAN leaves a VLAN the user made.
	recs, err := h.st.Networks()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Network.Name != n.Name && r.Network.Driver == DriverMacvlan && r.Network.Parent == n.Parent {
			return nil
		}
	}
	return macvlan.DeleteVLAN(ctx, h.ns, n.Parent)
}

func (macvlanDriver) attach(ctx context.Context, tx *attachTx) error {
	h, n, ep := tx.h, &tx.net.Network, tx.ep
	if len(tx.opts.Ports) > 0 {
		return tx.fail(stepCheckOptions, invalidf("published ports need the bridge driver: a macvlan sandbox is reached at its own address"))
	}
	if err := tx.allocate(ctx); err != nil {
		return err
	}
	ep.MTU = n.MTU
	if err := tx.step(ctx, StepLink, func() error {
		mac := tx.opts.MAC
		if mac == nil && n.MacvlanMode != macvlan.ModePassthru {
			mac = macFor(ep.Addresses)
		}
		link, err := macvlan.Create(ctx, h.ns, macvlan.Link{
			Name: ep.IfName, Parent: n.Parent, NS: tx.sb, Mode: n.MacvlanMode, MAC: mac, MTU: n.MTU,
		})
		if err != nil {
			return err
		}
		tx.undo.push(func(ctx context.Context) error { return macvlan.Delete(ctx, tx.sb, ep.IfName) })
		ep.MAC = link.Attrs().HardwareAddr.String()
		return nil
	}); err != nil {
		return err
	}
	if err := tx.configureSandbox(ctx, false); err != nil {
		return err
	}
	return tx.step(ctx, StepDNS, func() error { return h.setupDNS(ctx, tx) })
}

func (macvlanDriver) detach(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint) error {
	return errors.Join(h.teardownDNS(ctx, rec, ep), deleteInSandbox(ctx, ep, macvlan.Delete))
}

// deleteInSandbox removes the endpoint's interface from its sandbox with
// del, if the sandbox namespace is still there (when it is gone, the kernel
// has removed the interface with it).
func deleteInSandbox(ctx context.Context, ep *Endpoint, del func(context.Context, *netns.NS, string) error) error {
	if ep.NetNS == "" || !netns.Alive(ep.NetNS, ep.NetNSInode) {
		return nil
	}
	sb, err := netns.OpenPath(ep.NetNS)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer sb.Close()
	if ep.NetNSInode != 0 && sb.Inode() != ep.NetNSInode {
		return nil // another namespace took the path: not ours to touch
	}
	return del(ctx, sb, ep.IfName)
}
