package nettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/dnsrun"
	"github.com/sandnet/sandnet/netns"
)

// Prefix starts the name of every namespace nettest makes, so that leftovers
// are easy to recognise (and the same prefix sandnet's own tests use).
const Prefix = "snt-"

// Lab is a private host: a network namespace that plays the host, a
// sandnet.Host over it with a state directory of its own, and the networks
// and sandboxes made in it. Everything is removed by Close (NewLab registers
// Close with t.Cleanup).
//
// A Lab made by NewLab reports failures with t.Fatalf, so its methods must
// be called from the test's goroutine; one made by Start panics instead, as
// httptest.NewServer does. Sockets and Ping may be used from any goroutine.
type Lab struct {
	// Host is the sandnet.Host over the lab's host namespace.
	Host *sandnet.Host
	// NS is the namespace playing the host.
	NS *netns.NS

	id     string
	t      testing.TB
	ctx    context.Context
	tmpDir string // state dir made by Start, removed by Close
	state  string // the Host's state dir

	mu        sync.Mutex
	sandboxes map[string]*Sandbox
	order     []*Sandbox
	networks  []string
	resolvers []Resolver
	closers   []io.Closer
	upstream  *Sandbox
	closeOnce sync.Once
	closeErr  error
}

// NewLab makes a lab for t and removes it, with everything in it, when t
// ends (also when it fails or panics).
//
// Without root, NewLab runs t again in a child process inside a new user
// namespace (see Main for the details) and ends t in this process with the
// child's result: a failure with its output, or a skip that says the child
// passed or skipped. Code before NewLab runs in both processes, so call
// NewLab first.
func NewLab(t testing.TB) *Lab {
	t.Helper()
	ensurePrivileged(t)
	l, err := start(t.Context(), t)
	if err != nil {
		t.Fatalf("nettest: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("nettest: cleaning up lab %s: %v", l.id, err)
		}
	})
	return l
}

// Start makes a lab outside of a test (for Example functions and programs);
// the caller must Close it. Methods of a lab made by Start panic on failure.
// Without root, Start works only inside the user namespace Main sets up.
func Start(ctx context.Context) (*Lab, error) {
	if err := privileged(); err != nil {
		return nil, err
	}
	return start(ctx, nil)
}

func start(ctx context.Context, t testing.TB) (*Lab, error) {
	if err := setupChild(); err != nil {
		return nil, err
	}
	l := &Lab{id: randomID(), t: t, ctx: context.WithoutCancel(ctx), sandboxes: map[string]*Sandbox{}}
	var dir string
	if t != nil {
		dir = filepath.Join(t.TempDir(), "state")
	} else {
		tmp, err := os.MkdirTemp("", "nettest-")
		if err != nil {
			return nil, fmt.Errorf("making the lab's state dir: %w", err)
		}
		l.tmpDir = tmp
		dir = filepath.Join(tmp, "state")
	}
	ns, err := netns.Create(ctx, l.nsName("host"))
	if err != nil {
		l.removeTmp()
		return nil, err
	}
	l.NS = ns
	l.state = dir
	h, err := sandnet.NewHostNS(ns, sandnet.HostConfig{StateDir: dir})
	if err != nil {
		l.deleteNS(ns)
		l.removeTmp()
		return nil, fmt.Errorf("making the lab's host: %w", err)
	}
	l.Host = h
	if err := loUp(ctx, ns); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// ID is the lab's random identifier; every namespace of the lab is named
// "snt-ID-ROLE".
func (l *Lab) ID() string { return l.id }

// Context is the context the lab's operations run with.
func (l *Lab) Context() context.Context { return l.ctx }

func (l *Lab) nsName(role string) string { return Prefix + l.id + "-" + role }

// Network creates a network on the lab's host and returns its definition
// with the defaults filled in. A zero Name becomes "netN"; with no subnet a
// bridge network gets a free /24 from 10.89.0.0/16 (labs are isolated, so
// every lab may use the same one).
func (l *Lab) Network(n sandnet.Network) sandnet.Network {
	l.helper()
	l.mu.Lock()
	if n.Name == "" {
		n.Name = fmt.Sprintf("net%d", len(l.networks))
	}
	l.mu.Unlock()
	if n.Driver == "" {
		n.Driver = sandnet.DriverBridge // a Network with only a name would be a reference
	}
	def, err := l.Host.CreateNetwork(l.ctx, n)
	if err != nil {
		l.fatalf("creating network %q: %v", n.Name, err)
		return sandnet.Network{}
	}
	l.mu.Lock()
	if !slices.Contains(l.networks, def.Name) {
		l.networks = append(l.networks, def.Name)
	}
	l.mu.Unlock()
	return def
}

// Sandbox makes a namespace called "snt-ID-NAME" and, unless n is the zero
// Network, attaches it to n with the real sandnet Attach. opts (at most one)
// are the attach options; SandboxID and Hostname default to name. The name
// is how Dial and the lab's resolver know the sandbox.
func (l *Lab) Sandbox(name string, n sandnet.Network, opts ...sandnet.AttachOptions) *Sandbox {
	l.helper()
	if len(opts) > 1 {
		l.fatalf("sandbox %q: at most one AttachOptions, got %d", name, len(opts))
		return nil
	}
	l.mu.Lock()
	_, dup := l.sandboxes[name]
	l.mu.Unlock()
	if dup || name == "" || name == "host" || name == "upstream" {
		l.fatalf("sandbox %q: the name is empty, reserved or taken in this lab", name)
		return nil
	}
	ns, err := netns.Create(l.ctx, l.nsName(name))
	if err != nil {
		l.fatalf("sandbox %q: %v", name, err)
		return nil
	}
	s := &Sandbox{Name: name, NS: ns, lab: l}
	if err := loUp(l.ctx, ns); err != nil {
		l.deleteNS(ns)
		l.fatalf("sandbox %q: %v", name, err)
		return nil
	}
	l.mu.Lock()
	l.sandboxes[name] = s
	l.order = append(l.order, s)
	l.mu.Unlock()
	if n.Name != "" || n.Driver != "" {
		s.Attach(n, opts...)
	}
	return s
}

// Sandboxes returns the lab's sandboxes in the order they were made (the
// upstream namespace, if any, is not one of them).
func (l *Lab) Sandboxes() []*Sandbox {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*Sandbox
	for _, s := range l.order {
		if s != l.upstream {
			out = append(out, s)
		}
	}
	return out
}

// Lookup returns the sandbox called name, or nil.
func (l *Lab) Lookup(name string) *Sandbox {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sandboxes[name]
}

// track makes Close close c (listeners and connections the lab made).
func (l *Lab) track(c io.Closer) {
	l.mu.Lock()
	l.closers = append(l.closers, c)
	l.mu.Unlock()
}

// Close removes the lab: it closes the sockets the lab made, detaches every
// endpoint, removes the networks, deletes the sandboxes' and the host's
// namespaces and the state dir Start made. It is idempotent.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Lab) close() error {
	ctx := context.WithoutCancel(l.ctx)
	l.mu.Lock()
	closers := slices.Clone(l.closers)
	sbs := slices.Clone(l.order)
	nets := slices.Clone(l.networks)
	l.mu.Unlock()
	var errs []error
	for _, c := range slices.Backward(closers) {
		c.Close()
	}
	for _, s := range slices.Backward(sbs) {
		for _, ep := range slices.Backward(s.endpoints()) {
			if ep.Network == upstreamNetwork {
				continue
			}
			if err := l.Host.Detach(ctx, ep); err != nil {
				errs = append(errs, fmt.Errorf("detaching %s from %s: %w", s.Name, ep.Network, err))
			}
		}
	}
	for _, n := range slices.Backward(nets) {
		if err := l.Host.RemoveNetwork(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range slices.Backward(sbs) {
		errs = append(errs, l.deleteNS(s.NS))
	}
	if l.Host != nil {
		errs = append(errs, l.Host.Close())
		// The name server's helper process outlives a Host; this one's
		// state dir goes with the lab (t.TempDir's, or Start's), so the
		// helper is stopped and waited for before, or it could still be
		// writing there while the dir is removed.
		stopCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		errs = append(errs, dnsrun.StopHelper(stopCtx, l.state))
		cancel()
	}
	if l.NS != nil {
		errs = append(errs, l.deleteNS(l.NS))
	}
	errs = append(errs, l.removeTmp())
	return errors.Join(errs...)
}

func (l *Lab) deleteNS(ns *netns.NS) error {
	name := ns.Name()
	ns.Close()
	if err := netns.Delete(context.WithoutCancel(l.ctx), name); err != nil {
		return err
	}
	return nil
}

func (l *Lab) removeTmp() error {
	if l.tmpDir == "" {
		return nil
	}
	return os.RemoveAll(l.tmpDir)
}

func (l *Lab) helper() {
	if l.t != nil {
		l.t.Helper()
	}
}

// fatalf ends the test (NewLab) or panics (Start).
func (l *Lab) fatalf(format string, args ...any) {
	if l.t != nil {
		l.t.Helper()
		l.t.Fatalf("nettest: "+format, args...)
	}
	panic(fmt.Sprintf("nettest: "+format, args...))
}

// skipf skips the test (NewLab) or panics (Start).
func (l *Lab) skipf(format string, args ...any) {
	if l.t != nil {
		l.t.Helper()
		l.t.Skipf("nettest: "+format, args...)
	}
	panic(fmt.Sprintf("nettest: skipping: "+format, args...))
}

func randomID() string {
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	made.Lock()
	made.ids[id] = true
	made.Unlock()
	return id
}
