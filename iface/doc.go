// Package iface configures one network interface inside a namespace: brings
// it up, puts addresses on it and adds routes through it. These are the last
// steps of plugging a sandbox in (`ip link set eth0 up`, `ip addr add`,
// `ip route add default via GW`), usable alone, as the teaching examples do;
// and sets permanent neighbour entries on a link (`ip neigh replace ADDR
// lladdr MAC dev NAME nud permanent`), so a known address is never resolved;
// and sets a link's own settings (Link.SetConf: `sysctl -w
// net.ipv6.conf.NAME.KEY=V`); and Link.Configure, the one path by which a
// sandbox's link gets its addresses, routes and per-link settings (attach
// and repair both take it), with BornWithoutIPv6 for links about to be
// born in a namespace. Link.Lacks and Neighbor.Lacks say what a check
// finds missing. host.go reads what a namespace has: all its
// addresses and routes with their links, its uplink's MTU, the source
// address it would use towards an address (`ip route get`), and what it
// has inside or overlapping given prefixes (Overlaps).
//
// Every call reports its equivalent iproute2 command through the explain
// hook in ctx.
//
// Contract: needs root (CAP_NET_ADMIN in the namespace). Acts only in the
// namespace passed in, through its netlink handle, never in the caller's.
// Adds are idempotent (an address or the same route already there is
// success); Dels are idempotent (gone is success). Safe for concurrent use.
package iface
