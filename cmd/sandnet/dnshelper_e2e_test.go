package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/internal/testns"
)

// helperPID reads the state dir's helper.pid: the DNS helper's PID, or 0.
func helperPID(c *cli) int {
	b, _ := os.ReadFile(filepath.Join(c.state, "dns", "helper.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive reports whether process pid exists.
func alive(pid int) bool { return pid > 0 && unix.Kill(pid, 0) == nil }

// TestCLIDNSHelperKilled (issue 16 item 9): after kill -9 of the DNS
// helper, doctor says the network's name server is down and why, and a
// command that touches the networks (gc here, which needs no DNS itself)
// starts it again: doctor passes.
func TestCLIDNSHelperKilled(t *testing.T) {
	c := newCLI(t)
	a := testns.New(t, "a")
	c.ok("net", "create", "dn", "--subnet", "10.97.91.0/24")
	c.ok("attach", a.Name(), "--net", "dn", "--name", "alpha")
	t.Cleanup(func() {
		c.run("detach", a.Name(), "--net", "dn")
		c.run("net", "rm", "dn")
		waitFor(t, "the DNS helper to stop", func() bool { return !alive(helperPID(c)) })
	})
	pid := helperPID(c)
	if !alive(pid) {
		t.Fatal("no DNS helper runs after the attach")
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed helper to be gone", func() bool { return !alive(pid) })

	out, _, code := c.run("doctor", a.Name())
	if code != 1 || !strings.Contains(out, "dns-servers") || !strings.Contains(out, `name server of network "dn"`) || !strings.Contains(out, "is down") || !strings.Contains(out, "DNS helper") {
		t.Errorf("doctor after the helper was killed: exit %d\n%s", code, out)
	}
	c.ok("gc")
	if again := helperPID(c); again == pid || !alive(again) {
		t.Error("gc did not start the DNS helper again")
	}
	if out := c.ok("doctor", a.Name()); strings.Contains(out, "FAIL") {
		t.Errorf("doctor after gc:\n%s", out)
	}
}
