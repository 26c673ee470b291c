package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// zeroMAC is the FDB's default entry: where frames with no better match go.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// Entry is one VXLAN FDB entry: frames for MAC go to the host Dst.
// A zero MAC (00:00:00:00:00:00) is a flooding entry.
type Entry struct {
	MAC       net.HardwareAddr
	Dst       netip.Addr
	Permanent bool // set by a control plane; false: learnt from traffic
}

func fdbNeigh(index int, mac net.HardwareAddr, dst netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    index,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT | netlink.NUD_NOARP,
		HardwareAddr: mac,
		IP:           dst.AsSlice(),
	}
}

func checkPeer(peer netip.Addr) error {
	if !peer.IsValid() || peer.IsUnspecified() || peer.IsMulticast() {
		return fmt.Errorf("peer %s is not a unicast address: %w", peer, ErrInvalid)
	}
	return nil
}

// AddPeer makes the device dev flood broadcast and unknown frames to peer
// too, by appending an all-zeros FDB entry. Adding a peer twice is not an
// error.
//
// Equivalent to: bridge fdb append 00:00:00:00:00:00 dev DEV dst PEER
func AddPeer(ctx context.Context, ns *netns.NS, dev string, peer netip.Addr) error {
	if err := checkPeer(peer); err != nil {
		return err
	}
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	vx, err := lookup(nl, dev)
	if err != nil {
		return fmt.Errorf("adding peer %s: %w", peer, err)
	}
	explain.Say(ctx, "%s", bridgeCmd(ns, fmt.Sprintf("fdb append %s dev %s dst %s", zeroMAC, dev, peer)))
	if err := nl.NeighAppend(fdbNeigh(vx.Index, zeroMAC, peer)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding peer %s to vxlan %s in %s: %w", peer, dev, ns, err)
	}
	return nil
}

// RemovePeer stops dev from sending anything to peer: its flooding entry
// goes, and so does every MAC entry (static or learnt) that points at peer,
// so frames for the sandboxes behind it fall back to flooding among the
// remaining peers. A peer that is not there is not an error.
//
// With learning on, a peer that still has dev's host as its own peer and
// sends to it is learnt again: to cut two hosts apart, remove each from the
// other.
//
// Equivalent to: bridge fdb del 00:00:00:00:00:00 dev DEV dst PEER (and
// bridge fdb del MAC dev DEV dst PEER for each MAC entry on PEER)
func RemovePeer(ctx context.Context, ns *netns.NS, dev string, peer netip.Addr) error {
	if err := checkPeer(peer); err != nil {
		return err
	}
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	vx, err := lookup(nl, dev)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	entries, err := fdb(nl, vx.Index)
	if err != nil {
		return fmt.Errorf("removing peer %s: %w", peer, err)
	}
	var errs []error
	for _, e := range entries {
		if e.Dst != peer.Unmap() {
			continue
		}
		explain.Say(ctx, "%s", bridgeCmd(ns, fmt.Sprintf("fdb del %s dev %s dst %s", e.MAC, dev, peer)))
		if err := nl.NeighDel(fdbNeigh(vx.Index, e.MAC, peer)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("removing FDB entry %s dst %s from vxlan %s in %s: %w", e.MAC, peer, dev, ns, err))
		}
	}
	return errors.Join(errs...)
}

// AddMAC sends frames for mac straight to the host peer instead of
// flooding them, replacing what dev knew about mac.
//
// Equivalent to: bridge fdb replace MAC dev DEV dst PEER
func AddMAC(ctx context.Context, ns *netns.NS, dev string, mac net.HardwareAddr, peer netip.Addr) error {
	if err := checkPeer(peer); err != nil {
		return err
	}
	if len(mac) != 6 || bytes.Equal(mac, zeroMAC) {
		return fmt.Errorf("MAC %s: want a 6-byte, non-zero address: %w", mac, ErrInvalid)
	}
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	vx, err := lookup(nl, dev)
	if err != nil {
		return fmt.Errorf("adding MAC %s: %w", mac, err)
	}
	explain.Say(ctx, "%s", bridgeCmd(ns, fmt.Sprintf("fdb replace %s dev %s dst %s", mac, dev, peer)))
	if err := nl.NeighSet(fdbNeigh(vx.Index, mac, peer)); err != nil {
		return fmt.Errorf("adding MAC %s dst %s to vxlan %s in %s: %w", mac, peer, dev, ns, err)
	}
	return nil
}

// RemoveMAC forgets where mac lives (it is flooded again). Not an error if
// unknown.
//
// Equivalent to: bridge fdb del MAC dev DEV
func RemoveMAC(ctx context.Context, ns *netns.NS, dev string, mac net.HardwareAddr) error {
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	vx, err := lookup(nl, dev)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	entries, err := fdb(nl, vx.Index)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if bytes.Equal(e.MAC, mac) {
			explain.Say(ctx, "%s", bridgeCmd(ns, fmt.Sprintf("fdb del %s dev %s dst %s", mac, dev, e.Dst)))
			if err := nl.NeighDel(fdbNeigh(vx.Index, mac, e.Dst)); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("removing MAC %s from vxlan %s in %s: %w", mac, dev, ns, err)
			}
		}
	}
	return nil
}

// FDB lists dev's forwarding entries that point at a remote host.
//
// Equivalent to: bridge fdb show dev DEV
func FDB(ns *netns.NS, dev string) ([]Entry, error) {
	nl, err := ns.Netlink()
	if err != nil {
		return nil, err
	}
	vx, err := lookup(nl, dev)
	if err != nil {
		return nil, err
	}
	return fdb(nl, vx.Index)
}

// Peers lists the hosts dev floods to (its all-zeros entries), sorted.
func Peers(ns *netns.NS, dev string) ([]netip.Addr, error) {
	entries, err := FDB(ns, dev)
	if err != nil {
		return nil, err
	}
	var peers []netip.Addr
	for _, e := range entries {
		if bytes.Equal(e.MAC, zeroMAC) {
			peers = append(peers, e.Dst)
		}
	}
	slices.SortFunc(peers, netip.Addr.Compare)
	return slices.Compact(peers), nil
}

func fdb(nl *netlink.Handle, index int) ([]Entry, error) {
	neighs, err := nlwrap.Retry(func() ([]netlink.Neigh, error) {
		return nl.NeighListExecute(netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(index)})
	})
	if err != nil {
		return nil, fmt.Errorf("listing the FDB: %w", err)
	}
	var out []Entry
	for _, n := range neighs {
		dst, ok := netip.AddrFromSlice(n.IP)
		if !ok || n.LinkIndex != index {
			continue
		}
		out = append(out, Entry{MAC: n.HardwareAddr, Dst: dst.Unmap(), Permanent: n.State&netlink.NUD_PERMANENT != 0})
	}
	return out, nil
}
