package sandnet

import (
	"regexp"
	"strings"
	"testing"
)

// nameRule is the rule validName implements, as the regexp it replaced.
var nameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// FuzzValidName: validName accepts exactly what the rule does (1 to 64
// letters, digits, '.', '_' or '-', the first a letter or digit).
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"", "a", "A-1", "-a", ".a", "_a", "a_b.c-d", "a b", "é", "a\x00", "a/b",
		strings.Repeat("x", 64), strings.Repeat("x", 65), "0" + strings.Repeat("-", 63), "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), nameRule.MatchString(s); got != want {
			t.Fatalf("validName(%q) = %v, the rule says %v", s, got, want)
		}
	})
}
