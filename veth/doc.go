// Package veth creates virtual Ethernet pairs straight across namespaces: one
// end stays in the host namespace, the other is born inside the sandbox with
// its final name (usually eth0), so it is never visible in the host under a
// temporary name. The pair, its bridge, MTU, MAC and up flag go to the
// kernel in one request, which echoes the new link back.
//
// Contract: needs root (CAP_NET_ADMIN in both namespaces). Acts in the
// namespaces passed in, never in the caller's. Safe for concurrent use.
package veth
