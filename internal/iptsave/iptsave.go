// Package iptsave reads what iptables-save prints: tables, their chains
// (with the built-in chains' policies) and their rules, each rule as the
// line iptables-save wrote ("-A CHAIN ...") with its --comment. It is the
// one parser of that format in sandnet: the nat package reads its own rules
// with it, diag reads the FORWARD path with it.
//
// Contract: pure functions of their input; no root, no namespace, no exec.
package iptsave

import (
	"strconv"
	"strings"
)

// Table is one table of the output ("*nat" ... "COMMIT").
type Table struct {
	Name   string
	Chains []Chain // as declared, in order
	Rules  []Rule  // in order
}

// Chain is a declared chain; Policy is empty for a user chain ("-").
type Chain struct {
	Name, Policy string
}

// Rule is one rule: its chain, the line as printed, and its comment.
type Rule struct {
	Chain, Line, Comment string
}

// Parse reads iptables-save output. Lines before any "*table" header (a
// fragment of one table) go to a table named "".
func Parse(out string) []Table {
	var tables []Table
	cur := func() *Table {
		if len(tables) == 0 {
			tables = append(tables, Table{})
		}
		return &tables[len(tables)-1]
	}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			tables = append(tables, Table{Name: line[1:]})
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) == 0 {
				continue
			}
			c := Chain{Name: f[0]}
			if len(f) >= 2 && f[1] != "-" {
				c.Policy = f[1]
			}
			t := cur()
			t.Chains = append(t.Chains, c)
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			t := cur()
			t.Rules = append(t.Rules, Rule{Chain: f[1], Line: line, Comment: Comment(line)})
		}
	}
	return tables
}

// Comment extracts the --comment argument of a saved rule ("" if none).
func Comment(line string) string {
	_, rest, ok := strings.Cut(line, " --comment ")
	if !ok {
		return ""
	}
	if strings.HasPrefix(rest, `"`) {
		if s, err := strconv.QuotedPrefix(rest); err == nil {
			if u, err := strconv.Unquote(s); err == nil {
				return u
			}
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return rest[1:]
		}
		return rest[1 : end+1]
	}
	c, _, _ := strings.Cut(rest, " ")
	return c
}
