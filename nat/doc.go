// Package nat makes sandboxes on a bridge reach the world and the world
// reach them: outbound masquerade, published ports (DNAT), isolation
// between networks, as Docker does, without its well-known surprises.
//
// The work is split in two:
//   - rendering, pure: [StaticRules], [NetworkRules] and [EndpointRules]
//     turn a [Network] or an [Endpoint] into the exact rules (golden-file
//     tests show any change of layout as a diff);
//   - applying: a [Backend] installs and removes them in one namespace.
//     [IPTables] is the backend over iptables/ip6tables (go-iptables, and
//     one iptables-restore --noflush batch per change); [NFTables] the one
//     over nf_tables through netlink (no exec), with the same semantics:
//     one table "inet sandnet", per-network maps of published ports, so an
//     endpoint's ports are map elements changed in one transaction, at a
//     cost flat in the number of endpoints. [New] picks one by name, or
//     nftables where the namespace's kernel has it ("auto").
//
// The nftables layout (nft -f syntax in testdata/nftables.golden): base
// chains prerouting/output (nat, -100), postrouting (nat, 100), forward and
// input (filter, 0); regular chains "published" (one DNAT-by-map rule per
// network and family) and "isolation" (per network, plus the set
// "bridges" of every sandnet bridge). Coexistence with iptables: a DROP in
// iptables-nft's FORWARD chain (another table) is not overridden by an
// accept in table inet sandnet, so the nftables backend also inserts
// "-i BR"/"-o BR" accept rules, commented "sandnet net=NAME compat-i/o",
// into iptables-nft's filter FORWARD chains when they exist (see
// [NFTables]). iptables-legacy's chains are out of its reach.
//
// Layout: sandnet's rules live in its own chains (SANDNET-*), each jumped to
// once from a built-in chain; every rule carries a comment "sandnet
// net=NAME ..." and, for published ports, "ep=ID", so removal finds rules by
// owner and never by an address that may have been reused. The shared
// chains and jumps go with the last network. The FORWARD policy is never
// changed: the networks' traffic is accepted in SANDNET-FORWARD, so it flows
// even under a DROP policy.
//
// Published ports are DNATed for local destinations: from outside and from
// sandboxes (PREROUTING) and from the host itself (OUTPUT). The client's
// address is kept (no proxy). Loopback: a port published on all addresses or
// on 127.0.0.1 answers on 127.0.0.1 from the host itself only; that needs
// route_localnet on the bridge (the caller sets it) and a masquerade of
// 127.0.0.0/8 out of the bridge. Packets to 127.0.0.0/8 coming from any
// other interface are never DNATed and are dropped when they are not part
// of a connection. IPv6: masquerade and published ports work the same with
// ip6tables, except [::1]: the kernel never routes ::1 off the host, so
// publishing on [::1] is refused (ErrInvalid) and ports published on all
// addresses do not answer on [::1].
//
// Name servers: a Network with a Gateway gets guard rules in the input
// chain (SANDNET-INPUT): DNS queries (port 53, UDP and TCP) to the gateway
// that do not arrive on the bridge, or arrive there from outside the
// subnet, are dropped; the host's own (lo) pass. The network's name server
// answers its own sandboxes only (the dns package checks too).
//
// Restorable: everything the nftables backend creates lists in a form nft
// -f loads back (the bridges set's ifname key says its byte order; the
// compatibility rules' comments are rule comments), so nft list ruleset >
// f; nft flush ruleset; nft -f f restores it whole. Published ranges of any
// size are split into netlink messages and transactions that fit.
//
// Contract: root (CAP_NET_ADMIN) is needed. A Backend acts only in the
// namespace it was made for: commands are started from a thread inside it
// (netns.NS.Do), the nftables netlink socket is opened in it (by its fd),
// never in the caller's namespace. Backends are safe for
// concurrent use; iptables is called with -w, so concurrent processes wait
// for the xtables lock instead of failing.
package nat
