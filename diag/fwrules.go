package diag

import (
	"net/netip"
	"strings"

	"github.com/sandnet/sandnet/internal/iptsave"
)

// Chain is one chain of an iptables table: its policy (built-in chains
// only) and its rules, each as iptables-save prints it ("-A FORWARD ...").
type Chain struct {
	Policy string
	Rules  []string
}

// ParseIptablesSave reads one table of `iptables-save` output into chains.
func ParseIptablesSave(out string) map[string]*Chain {
	chains := map[string]*Chain{}
	get := func(name string) *Chain {
		if chains[name] == nil {
			chains[name] = &Chain{}
		}
		return chains[name]
	}
	for _, t := range iptsave.Parse(out) {
		for _, c := range t.Chains {
			if ch := get(c.Name); c.Policy != "" {
				ch.Policy = c.Policy
			}
		}
		for _, r := range t.Rules {
			ch := get(r.Chain)
			ch.Rules = append(ch.Rules, r.Line)
		}
	}
	return chains
}

// Packet is the traffic EvalForward follows: a new connection from a
// sandbox address, coming in from a bridge, going out of any other
// interface to any address.
type Packet struct {
	In  string
	Src netip.Addr
}

// Verdict is what the FORWARD chain does with a Packet.
type Verdict struct {
	// Verdict is ACCEPT, DROP or REJECT.
	Verdict string
	// Rule decided it; "" means the chain's policy did.
	Rule string
	// Partial lists DROP/REJECT rules that match only some of the traffic
	// (one protocol, some destinations, one outgoing interface).
	Partial []string
}

// EvalForward follows p through the FORWARD chain, jumping into user
// chains. A rule matches when every condition it has surely holds for p;
// conditions that hold only for some of the traffic (-p, -d, -o IF, unknown
// matches) make it a partial match, which does not decide the verdict.
func EvalForward(chains map[string]*Chain, p Packet) Verdict {
	var v Verdict
	fwd := chains["FORWARD"]
	if fwd == nil {
		return Verdict{Verdict: "ACCEPT"}
	}
	if verdict, rule, done := walk(chains, "FORWARD", p, &v, 0); done {
		v.Verdict, v.Rule = verdict, rule
		return v
	}
	v.Verdict = fwd.Policy
	if v.Verdict == "" {
		v.Verdict = "ACCEPT"
	}
	return v
}

func walk(chains map[string]*Chain, name string, p Packet, v *Verdict, depth int) (verdict, rule string, done bool) {
	ch := chains[name]
	if ch == nil || depth > 16 {
		return "", "", false
	}
	for _, r := range ch.Rules {
		m, target, gotoChain := matchRule(r, p)
		if m == noMatch {
			continue
		}
		if m == partialMatch {
			if target == "DROP" || target == "REJECT" {
				v.Partial = append(v.Partial, r)
			}
			continue
		}
		switch target {
		case "ACCEPT", "DROP", "REJECT":
			return target, r, true
		case "RETURN":
			return "", "", false
		case "":
			continue
		default:
			if chains[target] == nil {
				continue // LOG, MARK and other non-terminating targets
			}
			if verdict, rule, done := walk(chains, target, p, v, depth+1); done {
				return verdict, rule, true
			}
			if gotoChain {
				return "", "", false
			}
		}
	}
	return "", "", false
}

type match int

const (
	noMatch match = iota
	partialMatch
	fullMatch
)

// matchRule decides whether an iptables-save rule matches p.
func matchRule(rule string, p Packet) (m match, target string, gotoChain bool) {
	toks := tokens(rule)
	m = fullMatch
	partial := func() {
		if m == fullMatch {
			m = partialMatch
		}
	}
	for i := 2; i < len(toks); i++ {
		neg := false
		if toks[i] == "!" {
			neg = true
			i++
			if i >= len(toks) {
				break
			}
		}
		opt := toks[i]
		arg := ""
		if i+1 < len(toks) {
			arg = toks[i+1]
		}
		holds := func(b bool) {
			if b == neg {
				m = noMatch
			}
		}
		switch opt {
		case "-j", "-g":
			target, gotoChain = arg, opt == "-g"
			i++
		case "-i":
			holds(ifMatch(arg, p.In))
			i++
		case "-o":
			if ifMatch(arg, p.In) {
				holds(false) // going back out of the bridge: traffic between sandboxes, not out
			} else if !neg {
				partial()
			}
			i++
		case "-s":
			holds(prefixHas(arg, p.Src))
			i++
		case "-d":
			if pr, err := netip.ParsePrefix(arg); err != nil || pr.Bits() != 0 {
				partial()
			}
			i++
		case "-p":
			if arg != "all" {
				partial()
			}
			i++
		case "-m":
			i++
		case "--comment":
			i++
		case "--ctstate", "--state":
			holds(strings.Contains(arg, "NEW"))
			i++
		default:
			if strings.HasPrefix(opt, "-") {
				partial()
				if i+1 < len(toks) && !strings.HasPrefix(toks[i+1], "-") && toks[i+1] != "!" {
					i++
				}
			}
		}
		if m == noMatch {
			return noMatch, target, gotoChain
		}
	}
	return m, target, gotoChain
}

func ifMatch(pattern, name string) bool {
	if strings.HasSuffix(pattern, "+") {
		return strings.HasPrefix(name, strings.TrimSuffix(pattern, "+"))
	}
	return pattern == name
}

func prefixHas(s string, a netip.Addr) bool {
	if pr, err := netip.ParsePrefix(s); err == nil {
		return pr.Contains(a)
	}
	if b, err := netip.ParseAddr(s); err == nil {
		return b == a
	}
	return false
}

// tokens splits an iptables-save line, keeping "quoted strings" whole.
func tokens(s string) []string {
	var (
		out []string
		cur strings.Builder
		inQ bool
		any bool
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && inQ && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == '"':
			inQ = !inQ
			any = true
		case (ch == ' ' || ch == '\t') && !inQ:
			if any {
				out = append(out, cur.String())
				cur.Reset()
				any = false
			}
		default:
			cur.WriteByte(ch)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// deleteCmd turns "-A CHAIN ..." into "-D CHAIN ...", the command that
// removes the rule.
func deleteCmd(rule string) string {
	return "-D" + strings.TrimPrefix(rule, "-A")
}
