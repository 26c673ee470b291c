package main

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The rules the plugin's name checks implement, as regexps (the plugin
// itself does not compile them: see checkDNSLabel).
var (
	labelRule   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	sandboxRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
)

// TestNameChecks: checkDNSLabel accepts a name when each of its labels
// follows the DNS label rule, and usableAsIs what sandnet takes as a
// sandbox ID, for chosen names, every short string over a small alphabet
// and random long ones. (A fuzz target would not do: this package's test
// binary runs as the plugin in its child processes.)
func TestNameChecks(t *testing.T) {
	names := []string{"", "a", "a.b", "a..b", ".a", "a.", "-a", "a-", "a-b", "web-0.prod", "a_b", "A9",
		strings.Repeat("x", 63), strings.Repeat("x", 64), strings.Repeat("x", 65), "é", "a b", "x.-y", "0123456789abcdef-1"}
	const alphabet = "aZ9-._ é/"
	short := []string{""}
	for range 3 {
		var next []string
		for _, s := range short {
			for _, r := range alphabet {
				next = append(next, s+string(r))
			}
		}
		names = append(names, next...)
		short = next
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rnd.IntN(70))
		for i := range b {
			b[i] = "aZ9-._"[rnd.IntN(6)]
		}
		names = append(names, string(b))
	}
	for _, s := range names {
		want := true
		for _, l := range strings.Split(s, ".") {
			want = want && labelRule.MatchString(l)
		}
		if got := checkDNSLabel(s); got != want {
			t.Errorf("checkDNSLabel(%q) = %v, the rule says %v", s, got, want)
		}
		if got, want := usableAsIs(s), sandboxRule.MatchString(s); got != want {
			t.Errorf("usableAsIs(%q) = %v, the rule says %v", s, got, want)
		}
	}
}
