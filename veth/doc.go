// Package veth creates virtual Ethernet pairs straight across namespaces: one
// end stays in the host namespace, the other is born inside the sandbox with
// its final name (usually eth0), so it is never visible in the host under a
// temporary name. The pair, its bridge, MTU, MAC, up flag and queue counts
// (one each way unless Pair.Queues says more, so the kernel has none to trim)
// go to the kernel in one request, which echoes the new link back. With
// Pair.Replace, a veth left under the host end's name (the caller owns the
// name) is removed and the pair made again.
//
// Delete removes a pair as ip link del does, waiting until the kernel has
// freed it; Unregister returns as soon as the pair is out of both
// namespaces and leaves the kernel's last wait (an RCU grace period, about
// 16 ms) to a goroutine.
//
// Contract: needs root (CAP_NET_ADMIN in both namespaces). Acts in the
// namespaces passed in, never in the caller's. Safe for concurrent use.
package veth
