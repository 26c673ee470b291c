package nat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/iptsave"
	"github.com/sandnet/sandnet/netns"
)

// IPTables is the Backend over the iptables commands (go-iptables, and
// iptables-restore for batches), acting in one namespace. It works with
// both the nf_tables and the legacy flavour of iptables.
//
// Costs: adding an endpoint is two execs per family (iptables-save -t nat
// to see what is there, one iptables-restore --noflush batch); removing one
// is one exec when its rules are all there; ensuring a network is two per
// family.
type IPTables struct {
	ns *netns.NS

	mu   sync.Mutex // serialises changes to the shared chains
	once [2]sync.Once
	ipt  [2]*iptables.IPTables
	err  [2]error
}

var _ Backend = (*IPTables)(nil)

// NewIPTables returns the iptables backend acting in namespace ns (the
// host's). ns stays the caller's to close, after the backend's last use.
func NewIPTables(ns *netns.NS) *IPTables { return &IPTables{ns: ns} }

func idx(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// handle returns the go-iptables handle of family f; it is made inside the
// namespace (go-iptables probes the binary's version and --wait support).
func (b *IPTables) handle(f Family) (*iptables.IPTables, error) {
	i := idx(f)
	b.once[i].Do(func() {
		proto := iptables.ProtocolIPv4
		if f == IPv6 {
			proto = iptables.ProtocolIPv6
		}
		b.err[i] = b.ns.Do(func() (err error) {
			b.ipt[i], err = iptables.New(iptables.IPFamily(proto), iptables.Timeout(60))
			return err
		})
		if b.err[i] != nil {
			b.err[i] = fmt.Errorf("finding %s: %w", f.Command(), b.err[i])
		}
	})
	return b.ipt[i], b.err[i]
}

// tool is the path of a companion binary (iptables-save, ip6tables-restore)
// next to the family's iptables.
func (b *IPTables) tool(f Family, suffix string) (string, error) {
	ipt, err := b.handle(f)
	if err != nil {
		return "", err
	}
	_ = ipt
	name := f.Command() + suffix
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("finding %s: %w", name, ErrNotFound)
}

// run runs a command inside the namespace: the child of a fork made on a
// thread inside the namespace is inside it too.
func (b *IPTables) run(ctx context.Context, path, stdin string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := b.ns.Do(func() error {
		cmd := exec.CommandContext(ctx, path, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		return cmd.Run()
	})
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		return "", fmt.Errorf("%s in %s: %w: %s", filepath.Base(path), b.ns, err, msg)
	}
	return stdout.String(), nil
}

// savedRule is one rule as iptables-save prints it.
type savedRule struct {
	table, chain, comment, line string // line: "-A CHAIN ..."
}

// ruleset is what iptables-save reports.
type ruleset struct {
	chains map[string]bool // "table/chain"
	rules  []savedRule
}

func (rs *ruleset) has(r Rule) bool {
	for _, s := range rs.rules {
		if s.table == r.Table && s.chain == r.Chain && s.comment == r.Comment {
			return true
		}
	}
	return false
}

func (b *IPTables) save(ctx context.Context, f Family, table string) (*ruleset, error) {
	path, err := b.tool(f, "-save")
	if err != nil {
		return nil, err
	}
	var args []string
	if table != "" {
		args = []string{"-t", table}
	}
	out, err := b.run(ctx, path, "", args...)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	return parseSave(out), nil
}

func parseSave(out string) *ruleset {
	rs := &ruleset{chains: map[string]bool{}}
	for _, t := range iptsave.Parse(out) {
		for _, c := range t.Chains {
			rs.chains[t.Name+"/"+c.Name] = true
		}
		for _, r := range t.Rules {
			rs.rules = append(rs.rules, savedRule{table: t.Name, chain: r.Chain, comment: r.Comment, line: r.Line})
		}
	}
	return rs
}

// batch collects iptables-restore lines per table.
type batch struct {
	f      Family
	order  []string
	chains map[string][]string
	lines  map[string][]string
}

func newBatch(f Family) *batch {
	return &batch{f: f, chains: map[string][]string{}, lines: map[string][]string{}}
}

func (bt *batch) table(t string) {
	if _, ok := bt.lines[t]; !ok {
		bt.order = append(bt.order, t)
		bt.lines[t] = nil
	}
}

func (bt *batch) declare(c Chain) {
	bt.table(c.Table)
	bt.chains[c.Table] = append(bt.chains[c.Table], c.Name)
}

func (bt *batch) add(t, line string) {
	bt.table(t)
	bt.lines[t] = append(bt.lines[t], line)
}

func (bt *batch) empty() bool {
	for _, t := range bt.order {
		if len(bt.chains[t]) > 0 || len(bt.lines[t]) > 0 {
			return false
		}
	}
	return true
}

// apply runs the batch as one iptables-restore --noflush transaction and
// reports each line's equivalent command.
func (b *IPTables) apply(ctx context.Context, bt *batch) error {
	if bt.empty() {
		return nil
	}
	var in strings.Builder
	for _, t := range bt.order {
		in.WriteString("*" + t + "\n")
		for _, c := range bt.chains[t] {
			in.WriteString(":" + c + " - [0:0]\n")
			explain.Say(ctx, "%s", b.ns.Shell(fmt.Sprintf("%s -w -t %s -N %s", bt.f.Command(), t, c)))
		}
		for _, l := range bt.lines[t] {
			in.WriteString(l + "\n")
			explain.Say(ctx, "%s", b.ns.Shell(fmt.Sprintf("%s -w -t %s %s", bt.f.Command(), t, l)))
		}
		in.WriteString("COMMIT\n")
	}
	path, err := b.tool(bt.f, "-restore")
	if err != nil {
		return err
	}
	if _, err := b.run(ctx, path, in.String(), "-w", "--noflush"); err != nil {
		return fmt.Errorf("applying rules: %w", err)
	}
	return nil
}

// deleteLine turns a saved "-A CHAIN ..." into "-D CHAIN ...".
func deleteLine(s savedRule) string { return "-D" + s.line[2:] }

func split(rs []Rule, f Family) []Rule {
	var out []Rule
	for _, r := range rs {
		if r.Family == f {
			out = append(out, r)
		}
	}
	return out
}

// ensureStatic adds the shared chains and jumps missing from cur to bt.
func ensureStatic(bt *batch, f Family, cur *ruleset) {
	for _, c := range StaticChains(f) {
		if !cur.chains[c.Table+"/"+c.Name] {
			bt.declare(c)
		}
	}
	for _, r := range StaticRules(f) {
		if !cur.has(r) {
			bt.add(r.Table, r.Line())
		}
	}
}

// EnsureNetwork installs n's rules in one batch per family. If only some
// are there (someone deleted one), the network's rules are replaced as a
// whole, so their order holds.
func (b *IPTables) EnsureNetwork(ctx context.Context, n Network) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := NetworkRules(n)
	for _, f := range Families(n) {
		cur, err := b.save(ctx, f, "")
		if err != nil {
			return fmt.Errorf("ensuring rules of network %q: %w", n.Name, err)
		}
		bt := newBatch(f)
		ensureStatic(bt, f, cur)
		want := split(all, f)
		missing := 0
		for _, r := range want {
			if !cur.has(r) {
				missing++
			}
		}
		if missing > 0 {
			for _, s := range cur.rules {
				if strings.HasPrefix(s.comment, NetComment(n.Name)) && !strings.Contains(s.comment, " ep=") {
					bt.add(s.table, deleteLine(s))
				}
			}
			for _, r := range want {
				bt.add(r.Table, r.Line())
			}
		}
		if err := b.apply(ctx, bt); err != nil {
			return fmt.Errorf("ensuring rules of network %q: %w", n.Name, err)
		}
	}
	return nil
}

// RemoveNetwork removes every rule whose comment names network n, in both
// families, and the shared chains and jumps once no network has rules left.
func (b *IPTables) RemoveNetwork(ctx context.Context, n Network) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, f := range []Family{IPv4, IPv6} {
		if f == IPv6 && !n.Subnet6.IsValid() {
			if _, err := b.handle(f); err != nil {
				continue // no ip6tables: nothing can be there
			}
		}
		cur, err := b.save(ctx, f, "")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bt := newBatch(f)
		others := 0
		for _, s := range cur.rules {
			switch {
			case strings.HasPrefix(s.comment, NetComment(n.Name)):
				bt.add(s.table, deleteLine(s))
			case strings.HasPrefix(s.comment, CommentPrefix+" net="):
				others++
			}
		}
		if others == 0 {
			teardown(bt, f, cur)
		}
		if err := b.apply(ctx, bt); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing rules of network %q: %w", n.Name, err)
	}
	return nil
}

// teardown adds to bt what removes the jumps and the shared chains.
func teardown(bt *batch, f Family, cur *ruleset) {
	own := map[string]bool{}
	for _, c := range StaticChains(f) {
		own[c.Name] = true
	}
	for _, s := range cur.rules {
		if s.comment == CommentPrefix && !own[s.chain] {
			bt.add(s.table, deleteLine(s))
		}
	}
	for _, c := range StaticChains(f) {
		if cur.chains[c.Table+"/"+c.Name] {
			bt.add(c.Table, "-F "+c.Name)
		}
	}
	for _, c := range StaticChains(f) {
		if cur.chains[c.Table+"/"+c.Name] {
			bt.add(c.Table, "-X "+c.Name)
		}
	}
}

// AddEndpoint adds the endpoint's DNAT rules that are missing, one batch
// per family, then flushes conntrack entries of its host ports.
func (b *IPTables) AddEndpoint(ctx context.Context, n Network, e Endpoint) error {
	if err := Validate(n, e); err != nil {
		return err
	}
	all := EndpointRules(n, e)
	for _, f := range Families(n) {
		want := split(all, f)
		if len(want) == 0 {
			continue
		}
		cur, err := b.save(ctx, f, "nat")
		if err != nil {
			return fmt.Errorf("publishing ports of sandbox %q: %w", e.Sandbox, err)
		}
		if !cur.chains["nat/"+ChainDNAT] {
			return fmt.Errorf("publishing ports of sandbox %q: chain %s is missing (network %q not ensured): %w", e.Sandbox, ChainDNAT, n.Name, ErrNotFound)
		}
		bt := newBatch(f)
		for _, r := range want {
			if !cur.has(r) {
				bt.add(r.Table, r.Line())
			}
		}
		if err := b.apply(ctx, bt); err != nil {
			return fmt.Errorf("publishing ports of sandbox %q: %w", e.Sandbox, err)
		}
	}
	if err := FlushConntrack(ctx, b.ns, e.Ports); err != nil {
		return fmt.Errorf("publishing ports of sandbox %q: %w", e.Sandbox, err)
	}
	return nil
}

// RemoveEndpoint deletes the endpoint's rules (those rendered from e in one
// batch; if that fails, every rule whose comment names the endpoint), then
// flushes conntrack entries of its host ports.
func (b *IPTables) RemoveEndpoint(ctx context.Context, n Network, e Endpoint) error {
	var errs []error
	all := EndpointRules(n, e)
	for _, f := range Families(n) {
		// Fast path: delete the rules as rendered, in one transaction (it
		// fails as a whole if any is missing). Then find by comment whatever
		// is left (a half-done attach, rules rendered by another version).
		if want := split(all, f); len(want) > 0 {
			bt := newBatch(f)
			for _, r := range want {
				bt.add(r.Table, "-D "+r.Chain+" "+joinQuoted(r.Args))
			}
			if b.apply(ctx, bt) == nil {
				continue
			}
		}
		cur, err := b.save(ctx, f, "nat")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bt := newBatch(f)
		for _, s := range cur.rules {
			if strings.HasPrefix(s.comment, EndpointComment(n.Name, e.ID)) {
				bt.add(s.table, deleteLine(s))
			}
		}
		errs = append(errs, b.apply(ctx, bt))
	}
	errs = append(errs, FlushConntrack(ctx, b.ns, e.Ports))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unpublishing ports of sandbox %q: %w", e.Sandbox, err)
	}
	return nil
}

// Check returns the rules (shared, network's, endpoints') missing from the
// kernel. The shared and network rules are tested with iptables -C (exact
// match, not just the comment); the endpoints' DNAT rules, which can be
// thousands (a published range), are read with one iptables-save -t nat
// per family and matched by comment and target.
func (b *IPTables) Check(ctx context.Context, n Network, eps []Endpoint) ([]Rule, error) {
	var want []Rule
	for _, f := range Families(n) {
		want = append(want, StaticRules(f)...)
	}
	want = append(want, NetworkRules(n)...)
	var missing []Rule
	for _, r := range want {
		ipt, err := b.handle(r.Family)
		if err != nil {
			return nil, err
		}
		var ok bool
		err = b.ns.Do(func() (err error) {
			ok, err = ipt.Exists(r.Table, r.Chain, r.Args...)
			return err
		})
		if err != nil {
			var ie *iptables.Error
			if errors.As(err, &ie) && ie.IsNotExist() {
				ok, err = false, nil // the chain itself is missing
			} else {
				return nil, fmt.Errorf("checking rule %s: %w", r.Command(), err)
			}
		}
		if !ok {
			missing = append(missing, r)
		}
	}
	var eprules []Rule
	for _, e := range eps {
		eprules = append(eprules, EndpointRules(n, e)...)
	}
	for _, f := range Families(n) {
		rs := split(eprules, f)
		if len(rs) == 0 {
			continue
		}
		cur, err := b.save(ctx, f, "nat")
		if err != nil {
			return nil, err
		}
		have := map[string]bool{}
		for _, s := range cur.rules {
			if s.chain == ChainDNAT {
				have[s.comment+"\x00"+targetOf(s.line)] = true
			}
		}
		for _, r := range rs {
			if !have[r.Comment+"\x00"+targetOf(r.Line())] {
				missing = append(missing, r)
			}
		}
	}
	return missing, nil
}

// targetOf is the "-j ..." end of a rule line, as iptables-save prints it
// and as Line renders it.
func targetOf(line string) string {
	if i := strings.LastIndex(line, " -j "); i >= 0 {
		return line[i:]
	}
	return ""
}
