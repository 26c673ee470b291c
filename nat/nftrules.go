package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The nftables layout, rendered here (pure) and applied by [NFTables].
//
// One table, "inet sandnet", holds everything; its base chains hook where
// iptables' built-in chains do, at the same priorities. Static rules jump
// into the regular chains; per-network rules carry the comment "sandnet
// net=NAME TAG" (like the iptables rules); published ports are elements of
// per-network maps, so publishing or unpublishing a port never adds or
// removes a rule.
const (
	NFTTable = "sandnet" // family inet

	nftPrerouting  = "prerouting"  // nat, dstnat: jump published for local destinations
	nftOutput      = "output"      // nat, -100: the same for the host's own traffic
	nftPostrouting = "postrouting" // nat, srcnat: masquerade (SANDNET-POSTROUTING)
	nftForward     = "forward"     // filter: SANDNET-FORWARD
	nftInput       = "input"       // filter: SANDNET-INPUT (the 127.0.0.0/8 guard)
	nftPublished   = "published"   // regular: DNAT through the networks' maps (SANDNET-DNAT)
	nftIsolation   = "isolation"   // regular: SANDNET-ISOLATION-1 and -2
	nftBridges     = "bridges"     // set of every sandnet bridge (ISOLATION-2's targets)
)

var nftTable = &nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet}

type nftChainDef struct {
	name string
	typ  nftables.ChainType
	hook *nftables.ChainHook
	prio *nftables.ChainPriority
	desc string // nft syntax of the chain's head, for explanations
}

// nftChains are the table's chains, regular chains first (they are jump
// targets of the base chains' rules).
var nftChains = []nftChainDef{
	{name: nftPublished},
	{name: nftIsolation},
	{nftPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, "type nat hook prerouting priority dstnat; policy accept;"},
	{nftOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest, "type nat hook output priority -100; policy accept;"},
	{nftPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, "type nat hook postrouting priority srcnat; policy accept;"},
	{nftForward, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter, "type filter hook forward priority filter; policy accept;"},
	{nftInput, nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter, "type filter hook input priority filter; policy accept;"},
}

func (c nftChainDef) chain() *nftables.Chain {
	ch := &nftables.Chain{Name: c.name, Table: nftTable}
	if c.hook != nil {
		ch.Type, ch.Hooknum, ch.Priority = c.typ, c.hook, c.prio
		accept := nftables.ChainPolicyAccept
		ch.Policy = &accept
	}
	return ch
}

// nftRule is one rule of the sandnet table: its expressions and the same
// rule in nft syntax.
type nftRule struct {
	Family  Family // the family it matches; 0: both
	Chain   string
	Comment string
	Insert  bool // first in the chain
	Text    string
	Exprs   []expr.Any
}

// Command is the equivalent nft command (quoted for a shell).
func (r nftRule) Command() string {
	return "nft '" + r.body() + "'"
}

// body is the nft command without "nft", as nft -f reads it.
func (r nftRule) body() string {
	verb := "add"
	if r.Insert {
		verb = "insert"
	}
	return fmt.Sprintf("%s rule inet %s %s %s comment %s", verb, NFTTable, r.Chain, r.Text, strconv.Quote(r.Comment))
}

func (r nftRule) rule() Rule {
	return Rule{Family: r.Family, Table: "inet " + NFTTable, Chain: r.Chain, Insert: r.Insert, Comment: r.Comment, NFT: r.Command()}
}

// rb builds a rule's expressions and text side by side.
type rb struct {
	ex  []expr.Any
	txt []string
}

func (b *rb) say(s string) { b.txt = append(b.txt, s) }

func (b *rb) cmp(op expr.CmpOp, reg uint32, data []byte) {
	b.ex = append(b.ex, &expr.Cmp{Op: op, Register: reg, Data: data})
}

func eqOp(eq bool) expr.CmpOp {
	if eq {
		return expr.CmpOpEq
	}
	return expr.CmpOpNeq
}

func neq(eq bool) string {
	if eq {
		return ""
	}
	return "!= "
}

func (b *rb) nfproto(f Family) {
	p := byte(unix.NFPROTO_IPV4)
	if f == IPv6 {
		p = unix.NFPROTO_IPV6
	}
	b.ex = append(b.ex, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1})
	b.cmp(expr.CmpOpEq, 1, []byte{p})
}

func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func (b *rb) iface(key expr.MetaKey, word, name string, eq bool) {
	b.ex = append(b.ex, &expr.Meta{Key: key, Register: 1})
	b.cmp(eqOp(eq), 1, ifname(name))
	b.say(fmt.Sprintf("%s %s%q", word, neq(eq), name))
}

func (b *rb) iif(name string, eq bool) { b.iface(expr.MetaKeyIIFNAME, "iifname", name, eq) }
func (b *rb) oif(name string, eq bool) { b.iface(expr.MetaKeyOIFNAME, "oifname", name, eq) }

// addr matches the source or destination address against a prefix (the
// family's nfproto first, as nft does in an inet table).
func (b *rb) addr(dst bool, p netip.Prefix, eq bool) {
	f := IPv4
	if p.Addr().Is6() {
		f = IPv6
	}
	b.nfproto(f)
	b.addrOnly(dst, p, eq)
}

// addrOnly is addr without the nfproto test, for a rule's second address
// match (nft tests the family once).
func (b *rb) addrOnly(dst bool, p netip.Prefix, eq bool) {
	off, word := uint32(12), "ip"
	if p.Addr().Is6() {
		off, word = 8, "ip6"
	}
	if dst {
		off += uint32(p.Addr().BitLen() / 8)
	}
	bits := p.Bits()
	full := p.Addr().AsSlice()
	n := uint32((bits + 7) / 8)
	b.ex = append(b.ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
	if bits%8 != 0 {
		mask := make([]byte, n)
		for i := range mask {
			left := bits - 8*i
			switch {
			case left >= 8:
				mask[i] = 0xff
			case left > 0:
				mask[i] = byte(0xff << (8 - left))
			}
		}
		b.ex = append(b.ex, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
	}
	b.cmp(eqOp(eq), 1, full[:n])
	dir := "saddr"
	if dst {
		dir = "daddr"
	}
	s := p.String()
	if p.IsSingleIP() {
		s = p.Addr().String()
	}
	b.say(fmt.Sprintf("%s %s %s%s", word, dir, neq(eq), s))
}

// dport is "PROTO dport PORT" (nft adds the meta l4proto test itself).
func (b *rb) dport(proto string, port uint16) {
	b.ex = append(b.ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1})
	b.cmp(expr.CmpOpEq, 1, []byte{protoNum[proto]})
	b.ex = append(b.ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	b.cmp(expr.CmpOpEq, 1, port16(port))
	b.say(fmt.Sprintf("%s dport %d", proto, port))
}

func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// ctBits tests bits of ct state or ct status: set (any of them) or clear.
func (b *rb) ctBits(key expr.CtKey, bits uint32, set bool, text string) {
	b.ex = append(b.ex,
		&expr.Ct{Key: key, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(bits), Xor: native32(0)})
	b.cmp(eqOp(!set), 1, native32(0))
	b.say(text)
}

const ipsDstNAT = 0x20 // IPS_DST_NAT: conntrack's DNAT state

func (b *rb) ctDNAT(set bool) {
	if set {
		b.ctBits(expr.CtKeySTATUS, ipsDstNAT, true, "ct status dnat")
	} else {
		b.ctBits(expr.CtKeySTATUS, ipsDstNAT, false, "ct status & dnat == 0")
	}
}

func (b *rb) ctEstablished(set bool) {
	bits := expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED
	if set {
		b.ctBits(expr.CtKeySTATE, bits, true, "ct state established,related")
	} else {
		b.ctBits(expr.CtKeySTATE, bits, false, "ct state & (established | related) == 0")
	}
}

func (b *rb) fibLocal() { b.fibType(true) }

// fibType is "fib daddr type [!=] local".
func (b *rb) fibType(local bool) {
	b.ex = append(b.ex, &expr.Fib{Register: 1, ResultADDRTYPE: true, FlagDADDR: true})
	b.cmp(eqOp(local), 1, native32(unix.RTN_LOCAL))
	b.say("fib daddr type " + neq(local) + "local")
}

func (b *rb) verdict(k expr.VerdictKind, chain, text string) {
	b.ex = append(b.ex, &expr.Verdict{Kind: k, Chain: chain})
	b.say(text)
}

func (b *rb) accept()           { b.verdict(expr.VerdictAccept, "", "accept") }
func (b *rb) drop()             { b.verdict(expr.VerdictDrop, "", "drop") }
func (b *rb) jump(chain string) { b.verdict(expr.VerdictJump, chain, "jump "+chain) }

func (b *rb) masquerade() {
	b.ex = append(b.ex, &expr.Masq{})
	b.say("masquerade")
}

func (b *rb) rule(f Family, chain, comment string) nftRule {
	return nftRule{Family: f, Chain: chain, Comment: comment, Text: strings.Join(b.txt, " "), Exprs: b.ex}
}

var (
	loop4 = netip.MustParsePrefix("127.0.0.0/8")
	loop6 = netip.MustParsePrefix("::1/128")
)

// nftStaticRules are the table's fixed rules: the jumps to published ports
// for local destinations (never 127.0.0.0/8 from outside, never ::1), the
// jump to isolation first in forward, and the 127.0.0.0/8 guard.
func nftStaticRules() []nftRule {
	var rs []nftRule
	for _, f := range []Family{IPv4, IPv6} {
		tag := fmt.Sprintf("%s ipv%d", CommentPrefix, f)
		var b rb
		b.fibLocal()
		if f == IPv4 {
			b.addr(true, loop4, false)
		} else {
			b.addr(true, loop6, false)
		}
		b.jump(nftPublished)
		rs = append(rs, b.rule(f, nftPrerouting, tag))
		b = rb{}
		b.fibLocal()
		if f == IPv4 {
			b.nfproto(IPv4)
			b.say("meta nfproto ipv4")
		} else {
			b.addr(true, loop6, false)
		}
		b.jump(nftPublished)
		rs = append(rs, b.rule(f, nftOutput, tag))
	}
	var b rb
	b.jump(nftIsolation)
	r := b.rule(0, nftForward, CommentPrefix)
	r.Insert = true
	rs = append(rs, r)
	b = rb{}
	b.iif("lo", false)
	b.addr(true, loop4, true)
	b.ctEstablished(false)
	b.ctDNAT(false)
	b.drop()
	rs = append(rs, b.rule(IPv4, nftInput, CommentPrefix+" localnet-guard"))
	return rs
}

// nftNetworkRules renders a network's rules, in the order and with the
// comments of [NetworkRules]: masquerade, hairpin and localhost in
// postrouting; isolation; the forward rules; and the DNAT rules that look
// the destination up in the network's maps of published ports.
func nftNetworkRules(n Network) []nftRule {
	var rs []nftRule
	c := func(tag string) string { return NetComment(n.Name) + tag }
	br := n.Bridge
	for _, f := range Families(n) {
		s := n.subnet(f)
		add := func(chain, tag string, build func(b *rb)) {
			var b rb
			build(&b)
			rs = append(rs, b.rule(f, chain, c(tag)))
		}
		if cl := n.cluster(f); cl.IsValid() && !n.Internal {
			add(nftPostrouting, "masquerade", func(b *rb) {
				b.addr(false, s, true)
				b.addrOnly(true, cl, false)
				b.oif(br, false)
				b.fibType(false)
				b.masquerade()
			})
		} else if !n.Internal && !n.Routed {
			add(nftPostrouting, "masquerade", func(b *rb) { b.addr(false, s, true); b.oif(br, false); b.fibType(false); b.masquerade() })
		}
		add(nftPostrouting, "hairpin", func(b *rb) { b.addr(false, s, true); b.oif(br, true); b.ctDNAT(true); b.masquerade() })
		if f == IPv4 {
			add(nftPostrouting, "localhost", func(b *rb) { b.addr(false, loop4, true); b.oif(br, true); b.masquerade() })
		}
		if n.Internal {
			add(nftIsolation, "internal-out", func(b *rb) { b.nfproto(f); b.iif(br, true); b.oif(br, false); b.drop() })
			add(nftIsolation, "internal-in", func(b *rb) { b.nfproto(f); b.iif(br, false); b.oif(br, true); b.drop() })
		} else {
			add(nftIsolation, "isolation", func(b *rb) {
				b.nfproto(f)
				b.iif(br, true)
				b.oif(br, false)
				b.ctDNAT(false)
				b.ex = append(b.ex, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Lookup{SourceRegister: 1, SetName: nftBridges})
				b.say("oifname @" + nftBridges)
				b.drop()
			})
		}
		add(nftForward, "established", func(b *rb) { b.nfproto(f); b.oif(br, true); b.ctEstablished(true); b.accept() })
		add(nftForward, "published", func(b *rb) { b.nfproto(f); b.oif(br, true); b.ctDNAT(true); b.accept() })
		if !n.Internal {
			add(nftForward, "outbound", func(b *rb) { b.nfproto(f); b.iif(br, true); b.oif(br, false); b.accept() })
		}
		add(nftForward, "icc", func(b *rb) {
			b.nfproto(f)
			b.iif(br, true)
			b.oif(br, true)
			if n.NoICC {
				b.drop()
			} else {
				b.accept()
			}
		})
		if n.Routed && !n.Internal {
			add(nftForward, "routed", func(b *rb) { b.nfproto(f); b.oif(br, true); b.accept() })
		} else {
			add(nftForward, "no-direct", func(b *rb) { b.nfproto(f); b.oif(br, true); b.drop() })
		}
		add(nftPublished, fmt.Sprintf("dnat%d", f), func(b *rb) { dnatByMap(b, f, nftMapName(n.Name, f, false), false) })
		add(nftPublished, fmt.Sprintf("dnat%d-any", f), func(b *rb) { dnatByMap(b, f, nftMapName(n.Name, f, true), true) })
		if gw := n.gateway(f); gw.IsValid() {
			one := netip.PrefixFrom(gw, gw.BitLen())
			for _, p := range dnsGuardProtos {
				add(nftInput, "dns-iface-"+p, func(b *rb) {
					b.addr(true, one, true)
					b.dport(p, 53)
					b.iif("lo", false)
					b.iif(br, false)
					b.drop()
				})
				add(nftInput, "dns-source-"+p, func(b *rb) {
					b.addr(true, one, true)
					b.addrOnly(false, s, false)
					b.dport(p, 53)
					b.iif(br, true)
					b.drop()
				})
			}
		}
	}
	// The nfproto test is implied by "ip"/"ip6" in nft syntax: say it only
	// where nothing else names the family.
	for i := range rs {
		if !strings.Contains(rs[i].Text, "ip saddr") && !strings.Contains(rs[i].Text, "ip6 saddr") && !strings.Contains(rs[i].Text, " ip ") && !strings.Contains(rs[i].Text, " ip6 ") {
			rs[i].Text = fmt.Sprintf("meta nfproto ipv%d %s", rs[i].Family, rs[i].Text)
		}
	}
	return rs
}

// dnatByMap is "dnat ip to [ip daddr .] meta l4proto . th dport map @M":
// the key is built in registers 1.. (each field padded to 4 bytes), the
// looked-up address and port land in register 1 and right after it.
func dnatByMap(b *rb, f Family, m string, any bool) {
	b.nfproto(f)
	word, addrLen, off := "ip", uint32(4), uint32(16)
	nfp := uint32(unix.NFPROTO_IPV4)
	if f == IPv6 {
		word, addrLen, off, nfp = "ip6", 16, 24, unix.NFPROTO_IPV6
	}
	reg := uint32(unix.NFT_REG32_00)
	key := "meta l4proto . th dport"
	if !any {
		b.ex = append(b.ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: addrLen})
		reg += addrLen / 4
		key = word + " daddr . " + key
	} else {
		// meta l4proto goes to register 1 (the 16-byte one, same place).
		reg = 1
	}
	b.ex = append(b.ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: canonReg(reg)})
	next := reg + 1
	if reg == 1 {
		next = unix.NFT_REG32_01
	}
	b.ex = append(b.ex,
		&expr.Payload{DestRegister: next, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: m, DestRegister: 1, IsDestRegSet: true})
	proto := uint32(unix.NFT_REG32_01)
	if f == IPv6 {
		proto = unix.NFT_REG_2
	}
	b.ex = append(b.ex, &expr.NAT{Type: expr.NATTypeDestNAT, Family: nfp, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: proto, RegProtoMax: proto, Specified: true})
	b.say(fmt.Sprintf("dnat %s to %s map @%s", word, key, m))
}

// canonReg names a 32-bit register the way the kernel dumps it: by the
// 16-byte register's number when it starts one.
func canonReg(r uint32) uint32 {
	if r >= unix.NFT_REG32_00 && (r-unix.NFT_REG32_00)%4 == 0 {
		return (r-unix.NFT_REG32_00)/4 + 1
	}
	return r
}

// nftMapName names a network's map of published ports: "dnat4-NAME" (keyed
// by host address, protocol and port) or "dnat4any-NAME" (protocol and
// port: published on every address).
func nftMapName(network string, f Family, any bool) string {
	s := fmt.Sprintf("dnat%d", f)
	if any {
		s += "any"
	}
	return s + "-" + network
}

// nftMaps are a network's maps of published ports, per family it has.
func nftMaps(n Network) []*nftables.Set {
	var ms []*nftables.Set
	for _, f := range Families(n) {
		addr := nftables.TypeIPAddr
		if f == IPv6 {
			addr = nftables.TypeIP6Addr
		}
		for _, any := range []bool{false, true} {
			key := []nftables.SetDatatype{addr, nftables.TypeInetProto, nftables.TypeInetService}
			if any {
				key = key[1:]
			}
			ms = append(ms, &nftables.Set{
				Table: nftTable, Name: nftMapName(n.Name, f, any), IsMap: true, Concatenation: true,
				KeyType:  nftables.MustConcatSetType(key...),
				DataType: nftables.MustConcatSetType(addr, nftables.TypeInetService),
				Comment:  strings.TrimSpace(NetComment(n.Name)),
			})
		}
	}
	return ms
}

// nftBridgeSet is the set of every sandnet bridge. Its key is an interface
// name, which nft keeps in host byte order: without that said in the set's
// user data, nft lists every element as "" and cannot load its own listing
// back (nft list ruleset > f; nft -f f fails, and takes the admin's own
// tables in f down with it).
func nftBridgeSet() *nftables.Set {
	return &nftables.Set{Table: nftTable, Name: nftBridges, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian, Comment: CommentPrefix}
}

// nftBridgeElem is the network's element of the bridges set.
func nftBridgeElem(n Network) nftElem {
	return nftElem{
		Set: nftBridges, Comment: strings.TrimSpace(NetComment(n.Name)),
		Elem: nftables.SetElement{Key: ifname(n.Bridge), Comment: strings.TrimSpace(NetComment(n.Name))},
		Key:  strconv.Quote(n.Bridge),
	}
}

// nftElem is one element of a set or map, with its nft syntax.
type nftElem struct {
	Family   Family
	Set      string
	Comment  string
	Elem     nftables.SetElement
	Key, Val string // nft syntax
}

// Command is the equivalent nft command; del: the one that removes it.
func (e nftElem) Command(del bool) string { return "nft '" + e.body(del) + "'" }

func (e nftElem) body(del bool) string {
	if del {
		return fmt.Sprintf("delete element inet %s %s { %s }", NFTTable, e.Set, e.Key)
	}
	v := ""
	if e.Val != "" {
		v = " : " + e.Val
	}
	return fmt.Sprintf("add element inet %s %s { %s comment %s%s }", NFTTable, e.Set, e.Key, strconv.Quote(e.Comment), v)
}

func (e nftElem) rule() Rule {
	return Rule{Family: e.Family, Table: "inet " + NFTTable, Chain: "@" + e.Set, Comment: e.Comment, NFT: e.Command(false)}
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func port16(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// nftEndpointElems renders an endpoint's published ports as elements of
// its network's maps, with the comments of [EndpointRules].
func nftEndpointElems(n Network, e Endpoint) []nftElem {
	var es []nftElem
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
			proto := p.proto()
			any := !p.HostIP.IsValid() || p.HostIP.IsUnspecified()
			ip := "*"
			if p.HostIP.IsValid() {
				ip = p.HostIP.String()
			}
			var key []byte
			keyText := fmt.Sprintf("%s . %d", proto, p.HostPort)
			if !any {
				key = append(key, p.HostIP.AsSlice()...)
				keyText = p.HostIP.String() + " . " + keyText
			}
			key = append(key, pad4([]byte{protoNum[proto]})...)
			key = append(key, pad4(port16(p.HostPort))...)
			val := append(dst.AsSlice(), pad4(port16(p.ContainerPort))...)
			comment := fmt.Sprintf("%s%s/%s:%d", EndpointComment(n.Name, e.ID), proto, ip, p.HostPort)
			es = append(es, nftElem{
				Family: f, Set: nftMapName(n.Name, f, any), Comment: comment,
				Elem: nftables.SetElement{Key: key, Val: val, Comment: comment},
				Key:  keyText, Val: fmt.Sprintf("%s . %d", dst, p.ContainerPort),
			})
		}
	}
	return es
}

// The compatibility rules go into iptables-nft's own FORWARD chains (table
// ip filter, ip6 filter) when they exist: an accept in table inet sandnet
// does not stop a DROP policy or rule of another table, so, as the iptables
// backend's jump does, these accept the networks' traffic there. They are
// written so that both tools show them whole: iptables-save as "-i BR -m
// comment --comment C -j ACCEPT" (iptables-nft reads a rule's user-data
// comment as its comment match) and nft list ruleset as `iifname "BR"
// counter accept comment "C"`, which nft -f loads back. (An xt comment
// match, iptables-nft's own way, lists as nothing in nft and is lost by a
// save and restore.)
func nftCompatRules(n Network) []nftRule {
	var rs []nftRule
	for _, f := range Families(n) {
		for _, dir := range []string{"i", "o"} {
			key := expr.MetaKeyIIFNAME
			if dir == "o" {
				key = expr.MetaKeyOIFNAME
			}
			comment := NetComment(n.Name) + "compat-" + dir
			rs = append(rs, nftRule{
				Family: f, Chain: "FORWARD", Comment: comment, Insert: true,
				Text: fmt.Sprintf("-%s %s -m comment --comment %q -j ACCEPT", dir, n.Bridge, comment),
				Exprs: []expr.Any{
					&expr.Meta{Key: key, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append([]byte(n.Bridge), 0)},
					&expr.Counter{},
					&expr.Verdict{Kind: expr.VerdictAccept},
				},
			})
		}
	}
	return rs
}

func compatTable(f Family) *nftables.Table {
	if f == IPv6 {
		return &nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv6}
	}
	return &nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4}
}

func compatCommand(r nftRule) string {
	return fmt.Sprintf("%s -w -t filter -I FORWARD 1 %s", r.Family.Command(), r.Text)
}

// nftScript renders the whole table for networks and their endpoints in
// nft -f syntax: what NFTables installs, for reading and golden tests.
func nftScript(nets []Network, eps map[string][]Endpoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", NFTTable)
	fmt.Fprintf(&b, "\tset %s { type ifname; comment %q; }\n", nftBridges, CommentPrefix)
	for _, n := range nets {
		for _, m := range nftMaps(n) {
			fmt.Fprintf(&b, "\tmap %s { type %s : %s; comment %q; }\n", m.Name, m.KeyType.Name, m.DataType.Name, m.Comment)
		}
	}
	for _, c := range nftChains {
		if c.desc == "" {
			fmt.Fprintf(&b, "\tchain %s {\n\t}\n", c.name)
		} else {
			fmt.Fprintf(&b, "\tchain %s {\n\t\t%s\n\t}\n", c.name, c.desc)
		}
	}
	b.WriteString("}\n")
	for _, r := range nftStaticRules() {
		b.WriteString(r.body() + "\n")
	}
	for _, n := range nets {
		b.WriteString(nftBridgeElem(n).body(false) + "\n")
		for _, r := range nftNetworkRules(n) {
			b.WriteString(r.body() + "\n")
		}
		for _, e := range eps[n.Name] {
			for _, el := range nftEndpointElems(n, e) {
				b.WriteString(el.body(false) + "\n")
			}
		}
	}
	return b.String()
}
