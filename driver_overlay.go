package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/overlay"
)

// overlayDriver spans one network over several hosts. On each host: a
// bridge (Network.Bridge) and a VXLAN device (VNI, VXLANPort, source
// Underlay) that is a port of it; sandboxes attach to the bridge with veth
// pairs, as on a bridge network. The VXLAN device floods broadcast and
// unknown frames to every peer (Network.Peers, changed at run time with
// AddPeer and RemovePeer) and learns where each remote MAC lives, so the
// sandboxes of all hosts share one Ethernet segment.
//
// An overlay is a segment between sandboxes: the bridge carries no address,
// so the host does not route for it and sandboxes get no default route (the
// Gateway address is only kept out of the pool). A sandbox that needs the
// outside world also joins a bridge network, as Docker's docker_gwbridge
// does. Every host hands out addresses from its own IPRange of the shared
// Subnet, so two hosts never give out the same one. The MTU is the
// underlay's minus VXLAN's 50 bytes.
type overlayDriver struct{ noParts }

// DriverOverlay spans a network over several hosts: a bridge per host and a
// VXLAN device (Network.VNI, Underlay, Peers) joining them into one segment.
const DriverOverlay Driver = "overlay"

func (overlayDriver) traits() traits { return traits{ipam: true, veth: true} }

func (overlayDriver) setFields(n *Network) string {
	if n.VNI != 0 || n.VXLANPort != 0 || n.Underlay.IsValid() || len(n.Peers) > 0 {
		return "VNI, VXLAN port, underlay and peers"
	}
	return ""
}

func (overlayDriver) normalize(n *Network) error {
	if n.VNI < 1 || n.VNI > 1<<24-1 {
		return invalidf("network %q: an overlay needs a VNI from 1 to 16777215 (the same on every host), got %d", n.Name, n.VNI)
	}
	if n.VXLANPort == 0 {
		n.VXLANPort = overlay.DefaultPort
	}
	if n.VXLANPort < 1 || n.VXLANPort > 65535 {
		return invalidf("network %q: VXLAN port %d out of range 1-65535", n.Name, n.VXLANPort)
	}
	// A zero Underlay with peers is the source address of the route to the
	// first peer, filled in by createNetwork (defaultUnderlay).
	if (n.Underlay.IsValid() || len(n.Peers) == 0) && (!n.Underlay.IsValid() || n.Underlay.IsUnspecified() || n.Underlay.IsMulticast()) {
		return invalidf("network %q: an overlay needs this host's underlay address (Underlay), or peers to find it from, got %v", n.Name, n.Underlay)
	}
	n.Underlay = n.Underlay.Unmap()
	peers, err := normPeers(n.Name, n.Underlay, n.Peers)
	if err != nil {
		return err
	}
	n.Peers = peers
	if n.Bridge == "" {
		n.Bridge = ifname.Derive("sn-", n.Name)
	}
	return checkBridgeName(n)
}

// settle: an underlay left out is the route's source (defaultUnderlay), and
// the peers change at run time (AddPeer, RemovePeer).
func (overlayDriver) settle(n, o *Network) {
	if !n.Underlay.IsValid() {
		n.Underlay = o.Underlay
	}
	n.Peers = o.Peers
}

func (overlayDriver) hostDefaults(_ *Host, n *Network) error { return needSubnet(n) }

// normPeers checks overlay peers against the host's underlay address and
// returns them sorted, without duplicates. Without an underlay they stay
// in the order given: the first is the one the underlay is found from
// (defaultUnderlay), and createNetwork sorts them after that.
func normPeers(network string, underlay netip.Addr, peers []netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, p := range peers {
		if err := checkPeer(network, underlay, p); err != nil {
			return nil, err
		}
		if p = p.Unmap(); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if underlay.IsValid() {
		slices.SortFunc(out, netip.Addr.Compare)
	}
	return out, nil
}

func checkPeer(network string, underlay, p netip.Addr) error {
	p = p.Unmap()
	switch {
	case !p.IsValid() || p.IsUnspecified() || p.IsMulticast():
		return invalidf("network %q: peer %v is not a unicast address", network, p)
	case underlay.IsValid() && p.Is4() != underlay.Is4():
		return invalidf("network %q: peer %s and underlay %s are of different address families", network, p, underlay)
	case p == underlay:
		return invalidf("network %q: peer %s is this host's own underlay address", network, p)
	}
	return nil
}

// vxlanName is the VXLAN device of an overlay network on a host.
func vxlanName(network string) string { return ifname.Derive("snx-", network) }

func (overlayDriver) createNetwork(ctx context.Context, h *Host, rec *networkRecord) (undoStack, error) {
	n := &rec.Network
	if err := checkVNI(h, *n); err != nil {
		return nil, err
	}
	if !n.Underlay.IsValid() {
		if err := defaultUnderlay(ctx, h, n); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(n.Peers, netip.Addr.Compare) // the record keeps them sorted
	under, err := overlay.UnderlayLink(h.ns, n.Underlay)
	if err != nil {
		return nil, err
	}
	switch max := overlay.MTU(under.Attrs().MTU, n.Underlay.Is6()); {
	case n.MTU == 0:
		n.MTU = max
	case n.MTU > max:
		return nil, invalidf("network %q: mtu %d does not fit: underlay %s has mtu %d and VXLAN takes %d of it, so at most %d",
			n.Name, n.MTU, under.Attrs().Name, under.Attrs().MTU, under.Attrs().MTU-max, max)
	}
	var undo undoStack
	// The bridge's MAC is unique per host: the bridges of all hosts share a
	// segment, so a common one would look like a loop.
	_, created, err := bridge.Ensure(ctx, h.ns, bridge.Config{
		Name: n.Bridge, MTU: n.MTU, MAC: bridge.StableMAC(n.Bridge + "@" + n.Underlay.String()),
	})
	if err != nil {
		return nil, err
	}
	if created {
		rec.OwnsBridge = true
		undo.push(func(ctx context.Context) error { return bridge.Delete(ctx, h.ns, n.Bridge) })
	}
	dev := vxlanName(n.Name)
	if _, _, err := overlay.Ensure(ctx, h.ns, overlay.Device{
		Name: dev, VNI: n.VNI, Port: n.VXLANPort, Local: n.Underlay, MTU: n.MTU, Master: n.Bridge, Learning: true,
	}); err != nil {
		return nil, errors.Join(err, undo.run(ctx))
	}
	undo.push(func(ctx context.Context) error { return overlay.Delete(ctx, h.ns, dev) })
	for _, p := range n.Peers {
		if err := overlay.AddPeer(ctx, h.ns, dev, p); err != nil {
			return nil, errors.Join(err, undo.run(ctx))
		}
	}
	return undo, nil
}

// checkVNI refuses a second overlay network with the same VNI and port on a
// host: the kernel would take it for the same segment.
func checkVNI(h *Host, n Network) error {
	recs, err := h.st.Networks()
	if err != nil {
		return err
	}
	for _, r := range recs {
		o := r.Network
		if o.Name != n.Name && o.Driver == DriverOverlay && o.VNI == n.VNI && o.VXLANPort == n.VXLANPort {
			return fmt.Errorf("network %q: VNI %d (port %d) is network %q's: %w", n.Name, n.VNI, n.VXLANPort, o.Name, ErrExists)
		}
	}
	return nil
}

func (overlayDriver) removeNetwork(ctx context.Context, h *Host, rec *networkRecord) error {
	// Deleting the VXLAN device removes its FDB (the peers) with it.
	err := overlay.Delete(ctx, h.ns, vxlanName(rec.Network.Name))
	if rec.OwnsBridge {
		err = errors.Join(err, bridge.Delete(ctx, h.ns, rec.Network.Bridge))
	}
	return err
}

func (overlayDriver) attach(ctx context.Context, tx *attachTx) error {
	if len(tx.opts.Ports) > 0 {
		return tx.fail(stepCheckOptions, invalidf("published ports need the bridge driver: an overlay has no path from the host"))
	}
	if err := tx.allocate(ctx); err != nil {
		return err
	}
	tx.ep.Gateway, tx.ep.Gateway6 = netip.Addr{}, netip.Addr{} // no router on the segment: see overlayDriver
	if err := tx.vethStep(ctx); err != nil {
		return err
	}
	if err := tx.configureSandbox(ctx, false); err != nil {
		return err
	}
	return tx.step(ctx, StepDNS, func() error { return tx.h.setupDNS(ctx, tx) })
}

func (overlayDriver) detach(ctx context.Context, h *Host, rec *networkRecord, ep *Endpoint) error {
	return errors.Join(h.teardownDNS(ctx, rec, ep), h.removeVeth(ctx, ep.HostIfName))
}

// AddPeer makes the host with underlay address peer part of the overlay
// network on this host: broadcast and unknown frames are flooded to it too,
// so its sandboxes become reachable. The network's record lists it from now
// on. Adding a peer that is there already is not an error (and repairs the
// kernel's FDB if it lost the entry).
//
// sandnet does not discover peers: a control plane (the orchestrator) calls
// AddPeer on every host when a host joins, and RemovePeer when it leaves.
//
// Equivalent to: bridge fdb append 00:00:00:00:00:00 dev VXLAN dst PEER
func (h *Host) AddPeer(ctx context.Context, network string, peer netip.Addr) error {
	return h.changePeer(ctx, network, peer, true)
}

// RemovePeer takes the host peer out of the overlay network on this host:
// nothing is sent to it any more, neither flooded frames nor frames for the
// MACs learnt behind it. Removing a peer that is not there is not an error.
// The VXLAN device learns from every packet it receives, so a removed peer
// that still sends here is learnt again: remove peers on both sides (a host
// leaving is removed everywhere, and removes everyone).
//
// Equivalent to: bridge fdb del 00:00:00:00:00:00 dev VXLAN dst PEER (and
// every MAC entry with dst PEER)
func (h *Host) RemovePeer(ctx context.Context, network string, peer netip.Addr) error {
	return h.changePeer(ctx, network, peer, false)
}

func (h *Host) changePeer(ctx context.Context, network string, peer netip.Addr, add bool) error {
	op := "removing"
	if add {
		op = "adding"
	}
	fail := func(err error) error {
		return fmt.Errorf("%s peer %s on network %q: %w", op, peer, network, err)
	}
	if err := checkName("network", network); err != nil {
		return err
	}
	lock, err := h.st.LockNetwork(ctx, network, false)
	if err != nil {
		return fail(err)
	}
	defer lock.Release()
	rec, err := h.st.ReadNetwork(network)
	if errors.Is(err, ErrNotFound) {
		return fail(fmt.Errorf("no such network: %w", ErrNotFound))
	}
	if err != nil {
		return fail(err)
	}
	n := &rec.Network
	if n.Driver != DriverOverlay {
		return fail(invalidf("network %q is a %s network; peers belong to overlays", network, n.Driver))
	}
	if err := checkPeer(network, n.Underlay, peer); err != nil {
		return fail(err)
	}
	peer = peer.Unmap()
	dev := vxlanName(network)
	had := slices.Contains(n.Peers, peer)
	if add {
		if err := overlay.AddPeer(ctx, h.ns, dev, peer); err != nil {
			return fail(err)
		}
		if had {
			return nil
		}
		n.Peers = append(n.Peers, peer)
		slices.SortFunc(n.Peers, netip.Addr.Compare)
	} else {
		if err := overlay.RemovePeer(ctx, h.ns, dev, peer); err != nil {
			return fail(err)
		}
		if !had {
			return nil
		}
		n.Peers = slices.DeleteFunc(n.Peers, func(a netip.Addr) bool { return a == peer })
	}
	if err := h.st.WriteNetwork(network, rec); err != nil {
		if add {
			err = errors.Join(err, overlay.RemovePeer(context.WithoutCancel(ctx), h.ns, dev, peer))
		}
		return fail(err)
	}
	h.mu.Lock()
	delete(h.nets, network)
	h.mu.Unlock()
	h.log.Debug("overlay peers changed", "network", network, "peers", n.Peers)
	return nil
}

// errNoRouteToPeer is the error of an overlay network left without an
// Underlay when the host namespace has no route to its first peer, from
// which the underlay address would be taken. It is also ErrInvalid.
var errNoRouteToPeer = errors.New("no route to the overlay peer")

// defaultUnderlay sets n.Underlay to the source address of the host
// namespace's route to the first peer, as the kernel would pick it for
// VXLAN packets to that peer.
func defaultUnderlay(ctx context.Context, h *Host, n *Network) error {
	peer := n.Peers[0]
	src, err := iface.SourceTo(ctx, h.ns, peer)
	if err != nil {
		return fmt.Errorf("network %q: finding this host's underlay address (ip route get %s in %s): %w: %w (%v); give it explicitly (Network.Underlay, sandnet net create --underlay IP)",
			n.Name, peer, h.ns, ErrInvalid, errNoRouteToPeer, err)
	}
	n.Underlay = src
	for _, p := range n.Peers {
		if err := checkPeer(n.Name, n.Underlay, p); err != nil {
			return err
		}
	}
	return nil
}
