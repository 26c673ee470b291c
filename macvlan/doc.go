// Package macvlan puts sandboxes straight onto a physical network: a macvlan
// device hangs off a parent link of the host (eth0, or a VLAN of it such as
// eth0.50) and lives in the sandbox as eth0, with its own MAC address, so the
// sandbox is one more machine on the segment: the segment's router is its
// gateway, the host's bridge and NAT play no part.
//
// The modes say how macvlan devices on one parent reach each other:
//
//   - bridge (the default): directly, inside the kernel;
//   - private: not at all, even if the switch sends the frame back;
//   - vepa: only through the external switch (which must hairpin, "reflective relay");
//   - passthru: one device only, which takes over the parent (its MAC, promiscuous mode).
//
// A known limitation: the host cannot reach its own macvlan sandboxes
// through the parent link (the kernel hands frames from the parent to its
// macvlan devices only when they come from the wire). The usual workaround is
// a macvlan device for the host itself on the same parent, in bridge mode,
// with an address on the segment and a route to the sandboxes through it:
// [Create] makes one when Link.NS is the host.
//
// Contract: needs root (CAP_NET_ADMIN in the host and sandbox namespaces).
// Acts only in the namespaces passed in, never in the caller's. Safe for
// concurrent use.
package macvlan
