// Package overlay makes one Ethernet segment out of several hosts with VXLAN:
// on each host a VXLAN device (a VNI, a UDP port, the host's underlay
// address) is a port of a local bridge, and frames that leave through it are
// wrapped in UDP and sent to the other hosts ("peers") over the physical
// network (the "underlay").
//
// Where a frame goes is decided by the VXLAN device's forwarding database
// (FDB):
//
//   - one all-zeros entry per peer (AddPeer): broadcast, multicast and
//     unknown frames (ARP requests, the first packet to a new sandbox) are
//     copied to every peer, head-end replication without IP multicast;
//   - one entry per known MAC (AddMAC, or learnt from received frames when
//     Device.Learning is on): unicast frames go straight to the host that
//     holds that MAC.
//
// VXLAN adds 50 bytes (IPv4 underlay; 70 with IPv6) to every frame, so the
// overlay's MTU must be the underlay's minus that (see MTU), or large packets
// are silently dropped.
//
// The control plane, who is a peer and which MACs live where, is the
// caller's: this package programs the kernel, it does not discover anything.
//
// Contract: needs root (CAP_NET_ADMIN). Acts only in the namespace passed in.
// Every call is idempotent. Safe for concurrent use.
package overlay
