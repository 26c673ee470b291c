package testns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		// sandnet writes /etc/netns/NAME/{resolv.conf,hosts} for named
		// sandboxes; a test that never detaches must not leave them behind.
		os.RemoveAll(filepath.Join("/etc/netns", name))
	})
	return ns
}

// Run runs a command inside ns and returns its combined output; the test
// fails if it fails.
func Run(t testing.TB, ns *netns.NS, name string, args ...string) string {
	t.Helper()
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

// Ping sends a few pings from ns to addr and reports whether one answered.
func Ping(ns *netns.NS, addr string) error {
	_, err := Try(ns, "ping", "-c", "1", "-W", "1", "-w", "3", addr)
	return err
}

// HasCommand reports whether a program is installed.
func HasCommand(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}
