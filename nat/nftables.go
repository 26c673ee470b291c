package nat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

// NFTables is the Backend over nf_tables, spoken through netlink
// (github.com/google/nftables; nothing is exec'd), acting in one namespace.
//
// Everything lives in one table, "inet sandnet" (see nftrules.go for the
// layout); per-network rules carry the same comments as the iptables
// backend's. Published ports are elements of per-network maps keyed by
// (host address,) protocol and host port, so AddEndpoint and RemoveEndpoint
// change elements only, in one netlink transaction: their cost does not
// grow with the number of endpoints. The table goes with the last network.
//
// Coexistence with iptables: an accept in this table does not override a
// DROP policy or rule in another table at the same hook (every base chain
// must accept). Like Docker's and netavark's nftables modes, this backend
// cannot see iptables-legacy; but when iptables-nft's table ip (ip6)
// filter has a FORWARD chain, EnsureNetwork also inserts two accept rules
// per network there ("-i BR" and "-o BR", commented "sandnet net=NAME
// compat-i/o"), written the way iptables-nft writes them, so iptables-save
// shows them; the drops (isolation, ICC, no-direct) stay in table inet
// sandnet. A FORWARD chain created after the network is reported missing
// by Check, and EnsureNetwork (Repair) adds the rules.
type NFTables struct {
	ns *netns.NS

	mu   sync.Mutex // one transaction at a time on conn
	once sync.Once
	conn *nftables.Conn
	err  error
}

var _ Backend = (*NFTables)(nil)

// NewNFTables returns the nftables backend acting in namespace ns (the
// host's). ns stays the caller's to close, after the backend's last use;
// Close releases the backend's netlink socket.
func NewNFTables(ns *netns.NS) *NFTables { return &NFTables{ns: ns} }

// Close releases the netlink socket.
func (b *NFTables) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil {
		return b.conn.CloseLasting()
	}
	return nil
}

// c returns the lasting netlink connection, opened in the backend's
// namespace (through the namespace's fd, never the caller's namespace).
func (b *NFTables) c() (*nftables.Conn, error) {
	b.once.Do(func() {
		b.conn, b.err = nftables.New(nftables.WithNetNSFd(b.ns.Fd()), nftables.AsLasting())
		if b.err != nil {
			b.err = fmt.Errorf("opening an nftables netlink socket in %s: %w", b.ns, b.err)
		}
	})
	return b.conn, b.err
}

// NFTablesAvailable reports whether namespace ns has a working nf_tables
// with NAT: it creates a probe table with a nat chain and deletes it in the
// same transaction (nothing is left, nothing is changed).
func NFTablesAvailable(ns *netns.NS) error {
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Name: "sandnet-probe", Family: nftables.TableFamilyINet})
	c.AddChain(&nftables.Chain{Name: "probe", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("probing nf_tables in %s: %w", ns, err)
	}
	return nil
}

func nftComment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// current is what the sandnet table holds: rules per chain.
type current struct {
	table bool
	rules map[string][]*nftables.Rule // chain -> rules
}

// find returns the rule of chain with this comment matching family f (the
// same comment names a network's rule in both families).
func (cur *current) find(chain, comment string, f Family) *nftables.Rule {
	for _, r := range cur.rules[chain] {
		if nftComment(r) == comment && (f == 0 || ruleFamily(r) == f) {
			return r
		}
	}
	return nil
}

// ruleFamily is the family a rule tests with meta nfproto first, or 0.
func ruleFamily(r *nftables.Rule) Family {
	for i, e := range r.Exprs {
		if m, ok := e.(*expr.Meta); ok && m.Key == expr.MetaKeyNFPROTO && i+1 < len(r.Exprs) {
			if c, ok := r.Exprs[i+1].(*expr.Cmp); ok && len(c.Data) == 1 {
				if c.Data[0] == unix.NFPROTO_IPV6 {
					return IPv6
				}
				return IPv4
			}
		}
	}
	return 0
}

// read lists the sandnet table's rules (one dump per chain).
func (b *NFTables) read(c *nftables.Conn) (*current, error) {
	cur := &current{rules: map[string][]*nftables.Rule{}}
	if _, err := c.ListTableOfFamily(NFTTable, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, syscall.ENOENT) || strings.Contains(err.Error(), "no such file") {
			return cur, nil
		}
		return nil, fmt.Errorf("reading table inet %s in %s: %w", NFTTable, b.ns, err)
	}
	cur.table = true
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("listing chains in %s: %w", b.ns, err)
	}
	for _, ch := range chains {
		if ch.Table.Name != NFTTable {
			continue
		}
		rs, err := c.GetRules(nftTable, &nftables.Chain{Name: ch.Name, Table: nftTable})
		if err != nil {
			return nil, fmt.Errorf("reading chain %s in %s: %w", ch.Name, b.ns, err)
		}
		cur.rules[ch.Name] = rs
	}
	return cur, nil
}

func isNotExist(err error) bool {
	return errors.Is(err, syscall.ENOENT) || strings.Contains(err.Error(), "no such file or directory")
}

func isBusy(err error) bool {
	return errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EEXIST) || strings.Contains(err.Error(), "device or resource busy") || strings.Contains(err.Error(), "file exists")
}

// sameExprs compares a rule read back from the kernel with a rendered one.
func sameExprs(have *nftables.Rule, want nftRule) bool {
	return reflect.DeepEqual(normalise(have.Exprs), normalise(want.Exprs))
}

// normalise drops what the kernel fills in (counters' values) and what it
// reads back differently (an empty xor of bitwise).
func normalise(es []expr.Any) []expr.Any {
	out := make([]expr.Any, 0, len(es))
	for _, e := range es {
		switch x := e.(type) {
		case *expr.Counter:
			out = append(out, &expr.Counter{})
		case *expr.Lookup:
			y := *x
			y.SetID = 0
			out = append(out, &y)
		case *expr.Match:
			y := *x
			if c, ok := x.Info.(*xt.Comment); ok {
				y.Info = c
			}
			out = append(out, &y)
		default:
			out = append(out, e)
		}
	}
	return out
}

func (b *NFTables) addRule(ctx context.Context, c *nftables.Conn, r nftRule) {
	explain.Say(ctx, "%s", b.ns.Shell(r.Command()))
	nr := &nftables.Rule{
		Table: nftTable, Chain: &nftables.Chain{Name: r.Chain, Table: nftTable}, Exprs: r.Exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment),
	}
	if r.Insert {
		c.InsertRule(nr)
	} else {
		c.AddRule(nr)
	}
}

func (b *NFTables) delRule(ctx context.Context, c *nftables.Conn, chain string, r *nftables.Rule) error {
	explain.Say(ctx, "%s", b.ns.Shell(fmt.Sprintf("nft delete rule inet %s %s handle %d", NFTTable, chain, r.Handle)))
	return c.DelRule(&nftables.Rule{Table: nftTable, Chain: &nftables.Chain{Name: chain, Table: nftTable}, Handle: r.Handle})
}

// ensureBase queues the table, its chains, the bridges set and the static
// rules missing from cur.
func (b *NFTables) ensureBase(ctx context.Context, c *nftables.Conn, cur *current) error {
	if !cur.table {
		explain.Say(ctx, "%s", b.ns.Shell("nft add table inet "+NFTTable))
	}
	c.AddTable(nftTable)
	for _, ch := range nftChains {
		if _, ok := cur.rules[ch.name]; !ok {
			cmd := fmt.Sprintf("nft add chain inet %s %s", NFTTable, ch.name)
			if ch.desc != "" {
				cmd += " '{ " + ch.desc + " }'"
			}
			explain.Say(ctx, "%s", b.ns.Shell(cmd))
			c.AddChain(ch.chain())
		}
	}
	if !cur.table {
		explain.Say(ctx, "%s", b.ns.Shell(fmt.Sprintf("nft add set inet %s %s '{ type ifname; comment %q; }'", NFTTable, nftBridges, CommentPrefix)))
	}
	if err := c.AddSet(withSetID(nftBridgeSet()), nil); err != nil {
		return err
	}
	for _, r := range nftStaticRules() {
		have := cur.find(r.Chain, r.Comment, r.Family)
		if have != nil && sameExprs(have, r) {
			continue
		}
		if have != nil {
			if err := b.delRule(ctx, c, r.Chain, have); err != nil {
				return err
			}
		}
		b.addRule(ctx, c, r)
	}
	return nil
}

// EnsureNetwork installs n's maps, rules and bridge element in one
// transaction, with the table, chains and static rules if missing. If only
// some of the network's rules are there, they are replaced as a whole, so
// their order holds. Maps that exist keep their elements.
func (b *NFTables) EnsureNetwork(ctx context.Context, n Network) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.ensureNetwork(ctx, n); err != nil {
		return fmt.Errorf("ensuring rules of network %q: %w", n.Name, err)
	}
	return nil
}

func (b *NFTables) ensureNetwork(ctx context.Context, n Network) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	cur, err := b.read(c)
	if err != nil {
		return err
	}
	if err := b.ensureBase(ctx, c, cur); err != nil {
		return err
	}
	for _, m := range nftMaps(n) {
		if err := c.AddSet(withSetID(m), nil); err != nil {
			return err
		}
		explain.Say(ctx, "%s", b.ns.Shell(fmt.Sprintf("nft add map inet %s %s '{ type %s : %s; comment %q; }'", NFTTable, m.Name, m.KeyType.Name, m.DataType.Name, m.Comment)))
	}
	el := nftBridgeElem(n)
	explain.Say(ctx, "%s", b.ns.Shell(el.Command(false)))
	if err := c.SetAddElements(nftBridgeSet(), []nftables.SetElement{el.Elem}); err != nil {
		return err
	}
	want := nftNetworkRules(n)
	intact := true
	for _, r := range want {
		if have := cur.find(r.Chain, r.Comment, r.Family); have == nil || !sameExprs(have, r) {
			intact = false
			break
		}
	}
	if !intact {
		for chain, rs := range cur.rules {
			for _, r := range rs {
				if cm := nftComment(r); strings.HasPrefix(cm, NetComment(n.Name)) && !strings.Contains(cm, " ep=") {
					if err := b.delRule(ctx, c, chain, r); err != nil {
						return err
					}
				}
			}
		}
		for _, r := range want {
			b.addRule(ctx, c, r)
		}
	}
	if err := b.ensureCompat(ctx, c, n); err != nil {
		return err
	}
	return c.Flush()
}

// compatChain returns iptables-nft's FORWARD chain of family f and its
// rules, or nil if there is none.
func compatRules(c *nftables.Conn, f Family) ([]*nftables.Rule, bool, error) {
	t := compatTable(f)
	if _, err := c.ListChain(t, "FORWARD"); err != nil {
		if isNotExist(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	rs, err := c.GetRules(t, &nftables.Chain{Name: "FORWARD", Table: t})
	if err != nil {
		return nil, false, err
	}
	return rs, true, nil
}

// compatComment is the comment of a rule in iptables-nft's chains: its
// user-data comment (how sandnet writes them), or an xt comment match (how
// iptables-nft, and earlier sandnet versions, write them).
func compatComment(r *nftables.Rule) string {
	if s := nftComment(r); s != "" {
		return s
	}
	for _, e := range r.Exprs {
		if m, ok := e.(*expr.Match); ok && m.Name == "comment" {
			if c, ok := m.Info.(*xt.Comment); ok {
				return string(*c)
			}
		}
	}
	return ""
}

// ensureCompat queues the accept rules of n missing from iptables-nft's
// FORWARD chains, where those exist.
func (b *NFTables) ensureCompat(ctx context.Context, c *nftables.Conn, n Network) error {
	for _, f := range Families(n) {
		have, ok, err := compatRules(c, f)
		if err != nil || !ok {
			return err
		}
		for _, r := range nftCompatRules(n) {
			if r.Family != f || hasCompat(have, r.Comment) {
				continue
			}
			explain.Say(ctx, "%s", b.ns.Shell(compatCommand(r)))
			t := compatTable(f)
			c.InsertRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: "FORWARD", Table: t}, Exprs: r.Exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment)})
		}
	}
	return nil
}

func hasCompat(rs []*nftables.Rule, comment string) bool {
	for _, r := range rs {
		if compatComment(r) == comment {
			return true
		}
	}
	return false
}

// RemoveNetwork removes n's rules, maps (with their elements), bridge
// element and compatibility rules in one transaction, and the whole table
// when no other network is left in it.
func (b *NFTables) RemoveNetwork(ctx context.Context, n Network) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.removeNetwork(ctx, n); err != nil {
		return fmt.Errorf("removing rules of network %q: %w", n.Name, err)
	}
	return nil
}

func (b *NFTables) removeNetwork(ctx context.Context, n Network) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	for _, f := range []Family{IPv4, IPv6} {
		have, _, err := compatRules(c, f)
		if err != nil {
			return err
		}
		t := compatTable(f)
		for _, r := range have {
			if strings.HasPrefix(compatComment(r), NetComment(n.Name)) {
				explain.Say(ctx, "%s", b.ns.Shell(fmt.Sprintf("%s -w -t filter -D FORWARD -i %s -m comment --comment %q -j ACCEPT", f.Command(), n.Bridge, compatComment(r))))
				if err := c.DelRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: "FORWARD", Table: t}, Handle: r.Handle}); err != nil {
					return err
				}
			}
		}
	}
	cur, err := b.read(c)
	if err != nil {
		return err
	}
	if !cur.table {
		return c.Flush()
	}
	others := false
	for _, rs := range cur.rules {
		for _, r := range rs {
			cm := nftComment(r)
			if strings.HasPrefix(cm, CommentPrefix+" net=") && !strings.HasPrefix(cm, NetComment(n.Name)) {
				others = true
			}
		}
	}
	if !others {
		explain.Say(ctx, "%s", b.ns.Shell("nft delete table inet "+NFTTable))
		c.DelTable(nftTable)
		return c.Flush()
	}
	for chain, rs := range cur.rules {
		for _, r := range rs {
			if strings.HasPrefix(nftComment(r), NetComment(n.Name)) {
				if err := b.delRule(ctx, c, chain, r); err != nil {
					return err
				}
			}
		}
	}
	// Maps and the bridge element may be missing (a half-done ensure):
	// delete only those that are there.
	sets, err := c.GetSets(nftTable)
	if err != nil {
		return fmt.Errorf("listing sets in %s: %w", b.ns, err)
	}
	names := map[string]bool{}
	for _, s := range sets {
		names[s.Name] = true
	}
	for _, f := range []Family{IPv4, IPv6} {
		for _, any := range []bool{false, true} {
			if m := nftMapName(n.Name, f, any); names[m] {
				explain.Say(ctx, "%s", b.ns.Shell(fmt.Sprintf("nft delete map inet %s %s", NFTTable, m)))
				c.DelSet(&nftables.Set{Table: nftTable, Name: m})
			}
		}
	}
	el := nftBridgeElem(n)
	if elems, err := c.GetSetElements(nftBridgeSet()); err == nil {
		for _, e := range elems {
			if bytes.Equal(e.Key, el.Elem.Key) {
				explain.Say(ctx, "%s", b.ns.Shell(el.Command(true)))
				if err := c.SetDeleteElements(nftBridgeSet(), []nftables.SetElement{{Key: el.Elem.Key}}); err != nil {
					return err
				}
			}
		}
	}
	return c.Flush()
}

func mapOf(name string) *nftables.Set {
	return &nftables.Set{Table: nftTable, Name: name, IsMap: true, Concatenation: true}
}

// groupByMap groups elements by map, in first-seen order.
func groupByMap(es []nftElem) ([]string, map[string][]nftElem) {
	var order []string
	by := map[string][]nftElem{}
	for _, e := range es {
		if _, ok := by[e.Set]; !ok {
			order = append(order, e.Set)
		}
		by[e.Set] = append(by[e.Set], e)
	}
	return order, by
}

func elems(es []nftElem, keyOnly bool) []nftables.SetElement {
	out := make([]nftables.SetElement, len(es))
	for i, e := range es {
		out[i] = e.Elem
		if keyOnly {
			out[i] = nftables.SetElement{Key: e.Elem.Key}
		}
	}
	return out
}

// AddEndpoint adds the endpoint's published ports to its network's maps,
// all in one netlink transaction (no rule is added), then flushes the
// conntrack entries of its host ports. An element that is there already
// with the same target is fine; a host port mapped elsewhere is ErrInUse.
func (b *NFTables) AddEndpoint(ctx context.Context, n Network, e Endpoint) error {
	if err := Validate(n, e); err != nil {
		return err
	}
	es := nftEndpointElems(n, e)
	if len(es) > 0 {
		if err := b.addElems(ctx, es); err != nil {
			switch {
			case isNotExist(err):
				err = fmt.Errorf("a map of network %q is missing (network not ensured): %w", n.Name, ErrNotFound)
			case isBusy(err):
				err = fmt.Errorf("a host port is mapped to another sandbox in table inet %s: %w", NFTTable, ErrInUse)
			}
			return fmt.Errorf("publishing ports of sandbox %q: %w", e.Sandbox, err)
		}
	}
	if err := FlushConntrack(ctx, b.ns, e.Ports); err != nil {
		return fmt.Errorf("publishing ports of sandbox %q: %w", e.Sandbox, err)
	}
	return nil
}

func (b *NFTables) addElems(ctx context.Context, es []nftElem) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.c()
	if err != nil {
		return err
	}
	for _, e := range es {
		explain.Say(ctx, "%s", b.ns.Shell(e.Command(false)))
	}
	return b.inBatches(c, es, func(m string, part []nftElem) error {
		return c.SetAddElements(mapOf(m), elems(part, false))
	})
}

// Netlink limits on one change of set elements. A message's element list
// is one netlink attribute, whose length is 16 bits: past 64 KiB it wraps
// and the kernel reads garbage (a 1000-port range failed with a "missing"
// map). And a transaction is sent with one sendmsg, which the socket's
// send buffer bounds (EMSGSIZE, "message too long", from ~2400 ports).
// So elements go maxElemBytes to a message and maxBatchBytes to a
// transaction; an endpoint's ports fit in one transaction unless it
// publishes hundreds of them.
const (
	maxElemBytes  = 32 << 10
	maxBatchBytes = 128 << 10
)

// elemSize over-estimates an element's size in a netlink message.
func elemSize(e nftElem) int { return len(e.Elem.Key) + len(e.Elem.Val) + len(e.Elem.Comment) + 64 }

// inBatches queues es (grouped by map, in first-seen order) through add,
// at most maxElemBytes per call, and flushes a transaction whenever
// maxBatchBytes are queued, and at the end. A failure stops it: the
// transactions flushed before it stay.
func (b *NFTables) inBatches(c *nftables.Conn, es []nftElem, add func(m string, part []nftElem) error) error {
	order, by := groupByMap(es)
	queued := 0
	for _, m := range order {
		rest := by[m]
		for len(rest) > 0 {
			n, size := 0, 0
			for n < len(rest) && (n == 0 || size+elemSize(rest[n]) <= maxElemBytes) {
				size += elemSize(rest[n])
				n++
			}
			if queued > 0 && queued+size > maxBatchBytes {
				if err := c.Flush(); err != nil {
					return err
				}
				queued = 0
			}
			if err := add(m, rest[:n]); err != nil {
				return err
			}
			queued += size
			rest = rest[n:]
		}
	}
	return c.Flush()
}

// RemoveEndpoint removes the endpoint's elements from its network's maps
// in one transaction, then flushes the conntrack entries of its ports.
//
// The transaction adds each element (with its target) then deletes it:
// the add is a no-op if the element is there with the same target, so
// removing what is not there is not an error, and an element whose host
// port now maps to another sandbox (EBUSY) is never removed: then the maps
// are read and only elements whose comment names the endpoint are deleted.
func (b *NFTables) RemoveEndpoint(ctx context.Context, n Network, e Endpoint) error {
	var errs []error
	if es := nftEndpointElems(n, e); len(es) > 0 {
		if err := b.removeElems(ctx, n, e, es); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, FlushConntrack(ctx, b.ns, e.Ports))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unpublishing ports of sandbox %q: %w", e.Sandbox, err)
	}
	return nil
}

func (b *NFTables) removeElems(ctx context.Context, n Network, e Endpoint, es []nftElem) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.c()
	if err != nil {
		return err
	}
	for _, e := range es {
		explain.Say(ctx, "%s", b.ns.Shell(e.Command(true)))
	}
	if err := b.inBatches(c, es, func(m string, part []nftElem) error {
		if err := c.SetAddElements(mapOf(m), elems(part, false)); err != nil {
			return err
		}
		return c.SetDeleteElements(mapOf(m), elems(part, true))
	}); err == nil {
		return nil
	}
	// Slow path: read the network's maps, delete what names the endpoint.
	sets, err := c.GetSets(nftTable)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return err
	}
	var del []nftElem
	for _, s := range sets {
		if !strings.HasSuffix(s.Name, "-"+n.Name) || !strings.HasPrefix(s.Name, "dnat") {
			continue
		}
		have, err := c.GetSetElements(s)
		if err != nil {
			return err
		}
		for _, el := range have {
			if strings.HasPrefix(el.Comment, EndpointComment(n.Name, e.ID)) {
				del = append(del, nftElem{Set: s.Name, Elem: nftables.SetElement{Key: el.Key}})
			}
		}
	}
	return b.inBatches(c, del, func(m string, part []nftElem) error {
		return c.SetDeleteElements(mapOf(m), elems(part, true))
	})
}

// Check returns what is missing from the kernel: static and network rules
// (matched by chain and comment, then compared expression by expression),
// the network's bridge element, the endpoints' map elements (key and
// target), and the compatibility rules where iptables-nft's FORWARD chain
// exists. Each carries its nft (or iptables) command.
func (b *NFTables) Check(ctx context.Context, n Network, eps []Endpoint) ([]Rule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.c()
	if err != nil {
		return nil, err
	}
	cur, err := b.read(c)
	if err != nil {
		return nil, err
	}
	var missing []Rule
	for _, r := range append(nftStaticRules(), nftNetworkRules(n)...) {
		if have := cur.find(r.Chain, r.Comment, r.Family); have == nil || !sameExprs(have, r) {
			missing = append(missing, r.rule())
		}
	}
	// set -> its elements' key and value; read once per set.
	elements := map[string]map[string]bool{}
	get := func(name string) (map[string]bool, error) {
		if es, ok := elements[name]; ok {
			return es, nil
		}
		es := map[string]bool{}
		elements[name] = es
		if !cur.table {
			return es, nil
		}
		have, err := c.GetSetElements(&nftables.Set{Table: nftTable, Name: name})
		if err != nil && !isNotExist(err) {
			return nil, fmt.Errorf("reading set %s in %s: %w", name, b.ns, err)
		}
		for _, h := range have {
			es[elemKey(h)] = true
		}
		return es, nil
	}
	want := []nftElem{nftBridgeElem(n)}
	for _, e := range eps {
		want = append(want, nftEndpointElems(n, e)...)
	}
	for _, w := range want {
		have, err := get(w.Set)
		if err != nil {
			return nil, err
		}
		if !have[elemKey(w.Elem)] {
			missing = append(missing, w.rule())
		}
	}
	for _, f := range Families(n) {
		have, ok, err := compatRules(c, f)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		for _, r := range nftCompatRules(n) {
			if r.Family == f && !hasCompat(have, r.Comment) {
				missing = append(missing, Rule{Family: f, Table: "filter", Chain: "FORWARD", Insert: true, Comment: r.Comment, NFT: compatCommand(r)})
			}
		}
	}
	return missing, nil
}

// elemKey identifies an element by its key and value.
func elemKey(e nftables.SetElement) string { return string(e.Key) + "\x00" + string(e.Val) }

// setIDs numbers the sets sandnet adds. google/nftables numbers sets it is
// given without an ID from a package-global counter that is not safe for
// concurrent use across connections; giving every set an ID of our own
// keeps it off that path. The ID only has to be unique within a batch.
var setIDs atomic.Uint32

func withSetID(s *nftables.Set) *nftables.Set {
	if s.ID == 0 {
		s.ID = 1<<30 + setIDs.Add(1)%(1<<30) // apart from the library's own numbering
	}
	return s
}
