package testns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/probe"
	"github.com/sandnet/sandnet/internal/tools"
	"github.com/sandnet/sandnet/netns"
)

// Prefix starts the name of every namespace a test makes.
const Prefix = "snt-"

// RequireRoot skips the test unless it runs as root on Linux.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces on the real kernel (run as root, as CI does)")
	}
}

// New makes a named namespace "snt-<tag>-<random>" and removes it when the
// test ends, also when it fails.
func New(t testing.TB, tag string) *netns.NS {
	t.Helper()
	RequireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	name := Prefix + tag + "-" + hex.EncodeToString(b)
	ns, err := netns.Create(context.Background(), name)
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Delete(context.Background(), name); err != nil {
			t.Errorf("deleting namespace %s: %v", name, err)
		}
		// A test that never detaches must not leave the sandbox's files.
		RemoveEtcNetns(name)
	})
	return ns
}

// RemoveEtcNetns removes what sandnet writes for a named sandbox outside
// its namespace: /etc/netns/NAME, a link to NAME's directory in
// dns.NetnsHomeDir() (one of two places; this package cannot import dns,
// whose tests use it), which holds its resolv.conf and hosts.
func RemoveEtcNetns(name string) {
	os.RemoveAll(filepath.Join("/etc/netns", name))
	for _, home := range []string{"/run/sandnet/etc-netns", "/dev/shm/sandnet-etc-netns"} {
		os.RemoveAll(filepath.Join(home, name))
	}
}

// Run runs a command inside ns and returns its combined output; the test
// fails if it fails, and skips (see NeedProgram) if the program is not
// installed.
func Run(t testing.TB, ns *netns.NS, name string, args ...string) string {
	t.Helper()
	NeedProgram(t, "running "+name, name)
	out, err := Try(ns, name, args...)
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), ns, err, out)
	}
	return out
}

// Try runs a command inside ns with a 20 s limit and returns its output and error.
func Try(ns *netns.NS, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// Ping sends ICMP echo requests from ns to addr, in this process (no ping
// program), for up to 3 s, and returns nil at the first reply.
func Ping(ns *netns.NS, addr string) error {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return probe.Ping(ctx, ns, a)
}

// HasCommand reports whether a program is installed.
func HasCommand(name string) bool { return tools.Installed(name) }

// MissingMarker ends the message of every test skipped because a program is
// not installed (NeedProgram), so CI can find such skips in `go test -v`
// output and fail: on CI every program is installed and every test runs.
const MissingMarker = "[missing program]"

// NeedProgram skips the test, with one line naming the program and the
// Debian package that has it, unless every program in names is installed:
//
//	iptables backend: iptables not found (apt-get install iptables) [missing program]
func NeedProgram(t testing.TB, why string, names ...string) {
	t.Helper()
	for _, name := range names {
		if !tools.Installed(name) {
			msg := MissingMessage(why, name)
			if log := os.Getenv(MissingLogEnv); log != "" {
				if f, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o666); err == nil {
					fmt.Fprintf(f, "%s: %s\n", t.Name(), msg)
					f.Close()
				}
			}
			t.Skip(msg)
		}
	}
}

// MissingLogEnv names a file to which NeedProgram also appends each skip
// ("TestX: why: prog not found (apt-get install pkg) [missing program]"):
// .ci/run sets it and fails when the file is not empty, so on CI, where
// every program is installed, no test is silently skipped.
const MissingLogEnv = "SANDNET_MISSING_PROGRAMS"

// MissingMessage is NeedProgram's skip message.
func MissingMessage(why, name string) string {
	return fmt.Sprintf("%s: %s %s", why, tools.NotFound(name), MissingMarker)
}
