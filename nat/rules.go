package nat

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Family is an IP family: IPv4 rules go to iptables, IPv6 to ip6tables.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// Command is the iptables binary of the family.
func (f Family) Command() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// The chains sandnet owns. Each is jumped to once from a built-in chain (or
// from another of these); per-network and per-endpoint rules live in them.
const (
	ChainDNAT        = "SANDNET-DNAT"        // nat: published ports; from PREROUTING and OUTPUT, local destinations
	ChainPostrouting = "SANDNET-POSTROUTING" // nat: masquerade; from POSTROUTING
	ChainForward     = "SANDNET-FORWARD"     // filter: what the networks forward; from FORWARD
	ChainIsolation1  = "SANDNET-ISOLATION-1" // filter: first rule of SANDNET-FORWARD; traffic leaving a bridge
	ChainIsolation2  = "SANDNET-ISOLATION-2" // filter: drops what would enter another sandnet bridge
	ChainInput       = "SANDNET-INPUT"       // filter: guards 127.0.0.0/8 (route_localnet, IPv4) and the networks' name servers
)

// CommentPrefix starts the comment of every rule sandnet adds.
const CommentPrefix = "sandnet"

// Chain is a chain sandnet owns.
type Chain struct {
	Family Family
	Table  string
	Name   string
}

// Rule is one iptables rule, rendered but not applied.
type Rule struct {
	Family Family
	Table  string
	Chain  string
	// Insert puts the rule first in Chain instead of appending it.
	Insert bool
	// Comment identifies the rule: unique in (Family, Table, Chain).
	Comment string
	// Args are the matches and the target, including the comment match.
	Args []string
	// NFT, for the nftables backend, is the equivalent nft command (or,
	// for iptables-nft's own chains, iptables command); Command returns
	// it when set. Args are then empty.
	NFT string
}

// Line is the rule as iptables-restore reads it: "-A CHAIN ARGS...".
func (r Rule) Line() string {
	op := "-A " + r.Chain
	if r.Insert {
		op = "-I " + r.Chain + " 1"
	}
	return op + " " + joinQuoted(r.Args)
}

// Command is the equivalent iptables command.
func (r Rule) Command() string {
	if r.NFT != "" {
		return r.NFT
	}
	return r.Family.Command() + " -w -t " + r.Table + " " + r.Line()
}

func (r Rule) String() string { return r.Command() }

func joinQuoted(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		// Control characters are quoted (escaped) too: a newline would end
		// the iptables-restore line and start another of the caller's choosing.
		if a == "" || strings.ContainsAny(a, " \t\"'") || strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// rule builds a rule whose comment goes right before the target.
func rule(f Family, table, chain, comment string, args ...string) Rule {
	var out []string
	i := len(args)
	for j, a := range args {
		if a == "-j" {
			i = j
			break
		}
	}
	out = append(out, args[:i]...)
	out = append(out, "-m", "comment", "--comment", comment)
	out = append(out, args[i:]...)
	return Rule{Family: f, Table: table, Chain: chain, Comment: comment, Args: out}
}

// Families lists the families a network has.
func Families(n Network) []Family {
	var fs []Family
	if n.Subnet.IsValid() {
		fs = append(fs, IPv4)
	}
	if n.Subnet6.IsValid() {
		fs = append(fs, IPv6)
	}
	return fs
}

func (n Network) subnet(f Family) netip.Prefix {
	if f == IPv6 {
		return n.Subnet6
	}
	return n.Subnet
}

// cluster is the network's ClusterCIDR if it is of family f.
func (n Network) cluster(f Family) netip.Prefix {
	if n.ClusterCIDR.IsValid() && n.ClusterCIDR.Addr().Is6() == (f == IPv6) {
		return n.ClusterCIDR
	}
	return netip.Prefix{}
}

func loopback(f Family) string {
	if f == IPv6 {
		return "::1/128"
	}
	return "127.0.0.0/8"
}

// StaticChains are the shared chains of a family, in creation order.
func StaticChains(f Family) []Chain {
	return []Chain{
		{f, "nat", ChainDNAT},
		{f, "nat", ChainPostrouting},
		{f, "filter", ChainIsolation2},
		{f, "filter", ChainIsolation1},
		{f, "filter", ChainForward},
		{f, "filter", ChainInput},
	}
}

// StaticRules are the jumps into the shared chains and their fixed rules.
//
// Published ports are DNATed for local destinations only. Loopback
// destinations are left out of PREROUTING: a packet to 127.0.0.1 arriving
// from the uplink is never DNATed (Docker's bug, CVE-2020-8558's sibling),
// only the host's own traffic (OUTPUT) reaches a port published on
// 127.0.0.1. With route_localnet on a bridge, SANDNET-INPUT drops packets to
// 127.0.0.0/8 that came in on any other interface than lo and belong to no
// connection, as Kubernetes does. IPv6 cannot route ::1 off the host, so
// ::1 is not DNATed at all.
func StaticRules(f Family) []Rule {
	c := CommentPrefix
	lo := loopback(f)
	out := []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", ChainDNAT}
	if f == IPv6 {
		out = []string{"-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", lo, "-j", ChainDNAT}
	}
	rs := []Rule{
		rule(f, "nat", "PREROUTING", c, "-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", lo, "-j", ChainDNAT),
		rule(f, "nat", "OUTPUT", c, out...),
		rule(f, "nat", "POSTROUTING", c, "-j", ChainPostrouting),
		rule(f, "filter", "FORWARD", c, "-j", ChainForward),
		rule(f, "filter", ChainForward, c, "-j", ChainIsolation1),
	}
	rs[3].Insert, rs[4].Insert = true, true
	in := rule(f, "filter", "INPUT", c, "-j", ChainInput)
	in.Insert = true
	// The host's own traffic (lo) is never dropped here: the networks'
	// DNS guards below drop what does not come from their bridge.
	self := rule(f, "filter", ChainInput, c+" self", "-i", "lo", "-j", "RETURN")
	self.Insert = true
	rs = append(rs, in, self)
	if f == IPv4 {
		rs = append(rs, rule(f, "filter", ChainInput, c+" localnet-guard",
			"!", "-i", "lo", "-d", lo, "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"))
	}
	return rs
}

// gateway is the network's gateway address of family f, or the zero Addr.
func (n Network) gateway(f Family) netip.Addr {
	if f == IPv6 {
		return n.Gateway6
	}
	return n.Gateway
}

// dnsGuard is what the guard rules of the network's name server match:
// per transport protocol, queries to the gateway not arriving on the bridge
// ("dns-iface-PROTO"), and queries arriving on it from a source outside
// the subnet ("dns-source-PROTO"). Both are dropped.
var dnsGuardProtos = []string{"udp", "tcp"}

// NetComment is the comment prefix of every rule of network name (its
// endpoints' rules included), with the trailing space.
func NetComment(name string) string { return CommentPrefix + " net=" + name + " " }

// EndpointComment is the comment prefix of every rule of one endpoint.
func EndpointComment(network, id string) string { return NetComment(network) + "ep=" + id + " " }

// NetworkRules renders a network's rules, IPv4 then IPv6, in order.
//
//   - nat SANDNET-POSTROUTING: masquerade the subnet leaving by any other
//     interface than the bridge, to a destination that is not the host's
//     own (not for Internal; the host's own traffic from its gateway
//     address to itself keeps its source, so the name server knows it); masquerade hairpin
//     traffic (a sandbox reaching a published port of its own network
//     through a host address), so the reply comes back through the host;
//     masquerade 127.0.0.0/8 going out the bridge (the host reaching a port
//     published on 127.0.0.1).
//   - filter SANDNET-ISOLATION-1/2: what leaves the bridge for another
//     sandnet bridge is dropped unless DNATed (a published port); Internal
//     networks forward nothing in or out.
//   - filter SANDNET-FORWARD: accept replies, published ports and (unless
//     Internal) outbound traffic, so it works under a DROP policy; traffic
//     between sandboxes (only seen here with br_netfilter) per ICC; drop the
//     rest headed into the bridge (no direct routing to unpublished ports),
//     unless the network is Routed: then it is not masqueraded and traffic
//     routed to its sandboxes is accepted.
//   - filter SANDNET-INPUT: the name server on the gateway address answers
//     the network only: DNS queries to it that do not arrive on the bridge,
//     or arrive there from outside the subnet, are dropped (the host's own,
//     on lo, returned before).
func NetworkRules(n Network) []Rule {
	var rs []Rule
	for _, f := range Families(n) {
		s, br := n.subnet(f).String(), n.Bridge
		c := func(tag string) string { return NetComment(n.Name) + tag }
		if cl := n.cluster(f); cl.IsValid() && !n.Internal {
			rs = append(rs, rule(f, "nat", ChainPostrouting, c("masquerade"), "-s", s, "!", "-d", cl.String(), "!", "-o", br, "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", "MASQUERADE"))
		} else if !n.Internal && !n.Routed {
			rs = append(rs, rule(f, "nat", ChainPostrouting, c("masquerade"), "-s", s, "!", "-o", br, "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", "MASQUERADE"))
		}
		rs = append(rs, rule(f, "nat", ChainPostrouting, c("hairpin"), "-s", s, "-o", br, "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE"))
		if f == IPv4 {
			rs = append(rs, rule(f, "nat", ChainPostrouting, c("localhost"), "-s", loopback(f), "-o", br, "-j", "MASQUERADE"))
		}
		if n.Internal {
			rs = append(rs,
				rule(f, "filter", ChainIsolation1, c("internal-out"), "-i", br, "!", "-o", br, "-j", "DROP"),
				rule(f, "filter", ChainIsolation1, c("internal-in"), "!", "-i", br, "-o", br, "-j", "DROP"))
		} else {
			rs = append(rs, rule(f, "filter", ChainIsolation1, c("isolation"), "-i", br, "!", "-o", br, "-m", "conntrack", "!", "--ctstate", "DNAT", "-j", ChainIsolation2))
		}
		rs = append(rs,
			rule(f, "filter", ChainIsolation2, c("isolation"), "-o", br, "-j", "DROP"),
			rule(f, "filter", ChainForward, c("established"), "-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
			rule(f, "filter", ChainForward, c("published"), "-o", br, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"))
		if !n.Internal {
			rs = append(rs, rule(f, "filter", ChainForward, c("outbound"), "-i", br, "!", "-o", br, "-j", "ACCEPT"))
		}
		if n.NoICC {
			rs = append(rs, rule(f, "filter", ChainForward, c("icc"), "-i", br, "-o", br, "-j", "DROP"))
		} else {
			rs = append(rs, rule(f, "filter", ChainForward, c("icc"), "-i", br, "-o", br, "-j", "ACCEPT"))
		}
		if n.Routed && !n.Internal {
			rs = append(rs, rule(f, "filter", ChainForward, c("routed"), "-o", br, "-j", "ACCEPT"))
		} else {
			rs = append(rs, rule(f, "filter", ChainForward, c("no-direct"), "-o", br, "-j", "DROP"))
		}
		if gw := n.gateway(f); gw.IsValid() {
			for _, p := range dnsGuardProtos {
				rs = append(rs,
					rule(f, "filter", ChainInput, c("dns-iface-"+p), "-d", gw.String(), "!", "-i", br, "-p", p, "-m", p, "--dport", "53", "-j", "DROP"),
					rule(f, "filter", ChainInput, c("dns-source-"+p), "-d", gw.String(), "-i", br, "!", "-s", s, "-p", p, "-m", p, "--dport", "53", "-j", "DROP"))
			}
		}
	}
	return rs
}

// EndpointRules renders an endpoint's rules: one DNAT rule per published
// port and family, in SANDNET-DNAT. A port with no HostIP is published on
// every local address of each family the endpoint has an address of; one
// with a HostIP only on that address.
func EndpointRules(n Network, e Endpoint) []Rule {
	var rs []Rule
	for _, f := range Families(n) {
		dst := e.Addr
		if f == IPv6 {
			dst = e.Addr6
		}
		if !dst.IsValid() {
			continue
		}
		for _, p := range e.Ports {
			if p.HostIP.IsValid() && p.HostIP.Is6() != (f == IPv6) {
				continue
			}
			ip := "*"
			var args []string
			if p.HostIP.IsValid() {
				ip = p.HostIP.String()
				if !p.HostIP.IsUnspecified() {
					args = append(args, "-d", p.HostIP.String())
				}
			}
			proto := p.proto()
			to := netip.AddrPortFrom(dst, p.ContainerPort).String()
			args = append(args, "-p", proto, "-m", proto, "--dport", strconv.Itoa(int(p.HostPort)),
				"-j", "DNAT", "--to-destination", to)
			comment := fmt.Sprintf("%s%s/%s:%d", EndpointComment(n.Name, e.ID), proto, ip, p.HostPort)
			rs = append(rs, rule(f, "nat", ChainDNAT, comment, args...))
		}
	}
	return rs
}
