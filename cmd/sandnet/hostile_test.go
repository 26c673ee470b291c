package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// TestHostileArguments runs the built binary with hostile arguments in
// every place a name or value goes: each run exits non-zero with one line
// on stderr, and creates nothing (no namespace, state file, link or rule).
var counterRE = regexp.MustCompile(` \[\d+:\d+\]$`)

func TestHostileArguments(t *testing.T) {
	c := newCLI(t)
	sb := testns.New(t, "hostile")
	c.ok("net", "create", "good", "--subnet", "10.97.70.0/24")
	c.ok("attach", sb.Name(), "--net", "good", "-p", "18600:80")
	t.Cleanup(func() {
		// Detach, so the DNS helper serving the state dir stops before the
		// state dir goes away.
		c.run("detach", sb.Name(), "--net", "good")
		b, _ := os.ReadFile(filepath.Join(c.state, "dns", "helper.pid"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		for deadline := time.Now().Add(20 * time.Second); pid > 0 && syscall.Kill(pid, 0) == nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
	})
	hostile := []string{
		"a b", "-x", "x\ny", "../x", "../../etc/passwd", strings.Repeat("n", 300), "x;touch /tmp/sandnet-pwned",
		"$(touch /tmp/sandnet-pwned)", "`id`", "x|y", "x -j ACCEPT", "", "%s%n%x", "snt-\u202eevil",
	}
	snapshot := func() string {
		var files []string
		filepath.WalkDir(c.state, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".lock") && !strings.Contains(p, "/dns/") {
				files = append(files, p)
			}
			return nil
		})
		names, _ := netns.List()
		var mine []string
		for _, n := range names {
			// Other tests make namespaces meanwhile: only ones the hostile
			// names could have made count.
			if slices.Contains(hostile, n) || strings.ContainsAny(n, " ;|$`%\n") || strings.Contains(n, "evil") || strings.HasPrefix(n, "nnnn") {
				mine = append(mine, n)
			}
		}
		slices.Sort(mine)
		rules := testns.Run(t, c.lab, "iptables-save")
		var kept []string
		for _, l := range strings.Split(rules, "\n") {
			if !strings.HasPrefix(l, "#") {
				kept = append(kept, counterRE.ReplaceAllString(l, ""))
			}
		}
		var linkNames []string
		for _, l := range strings.Split(testns.Run(t, c.lab, "ip", "-br", "link"), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				linkNames = append(linkNames, f[0])
			}
		}
		return strings.Join(files, " ") + "\n" + strings.Join(mine, " ") + "\n" + strings.Join(linkNames, " ") + "\n" + strings.Join(kept, "\n")
	}
	before := snapshot()
	for _, bad := range hostile {
		for _, args := range [][]string{
			{"ns", "add", bad},
			{"ns", "del", bad},
			{"net", "create", bad, "--subnet", "10.97.71.0/24"},
			{"net", "create", "n2", "--subnet", bad},
			{"net", "create", "n3", "--driver", bad, "--subnet", "10.97.72.0/24"},
			{"net", "create", "n4", "--gateway", bad, "--subnet", "10.97.73.0/24"},
			{"net", "create", "n5", "--parent", bad, "--driver", "macvlan", "--subnet", "10.97.74.0/24"},
			{"net", "rm", bad},
			{"attach", bad, "--net", "good"},
			{"attach", sb.Name(), "--net", bad},
			{"attach", sb.Name(), "--net", "good", "--ip", bad},
			{"attach", sb.Name(), "--net", "good", "-p", bad},
			{"attach", sb.Name(), "--net", "good", "--name", bad},
			{"attach", sb.Name(), "--net", "good", "--alias", bad},
			{"detach", sb.Name(), "--net", bad},
			{"detach", bad, "--net", "good"},
			{"doctor", bad},
			{"inspect", bad},
			{"repair", bad},
			{"repair", sb.Name(), "--net", bad},
		} {
			if bad == "" && slices.Index(args, bad) > 2 && args[slices.Index(args, bad)-1] != "--net" {
				continue // an empty flag value means "the default"
			}
			if bad == "" && args[0] == "repair" && len(args) > 2 {
				continue // repair --net "": every network
			}
			_, stderr, code := c.run(args...)
			if code == 0 {
				if (args[len(args)-2] == "--alias" || args[len(args)-2] == "--name") && bad == "" {
					// an empty name is "no name": the attach is legitimate
					c.ok("detach", sb.Name(), "--net", "good")
					c.ok("attach", sb.Name(), "--net", "good", "-p", "18600:80")
					continue
				}
				t.Errorf("sandnet %q: exit 0", args)
				continue
			}
			if lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n") + 1; lines != 1 || stderr == "" {
				t.Errorf("sandnet %q: %d lines on stderr: %q", args, lines, stderr)
			}
			if after := snapshot(); after != before {
				t.Fatalf("sandnet %q changed things:\n%s\nwant\n%s", args, after, before)
			}
		}
	}
	if _, err := os.Stat("/tmp/sandnet-pwned"); err == nil {
		t.Error("a shell metacharacter ran a command")
	}
}
