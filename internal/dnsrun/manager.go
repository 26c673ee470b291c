package dnsrun

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/statefile"
)

// Manager makes sure a runner serves a state directory's networks: it
// starts the helper process or its own in-process runner when none runs.
type Manager struct {
	cfg Config
	src Source

	mu  sync.Mutex
	run *runner // the in-process runner (Config.InProcess), while it runs

	loChecked atomic.Bool // lo is known to be up in the host namespace
}

// New returns the Manager of cfg.Dir; src is what an in-process runner serves.
func New(cfg Config, src Source) *Manager { return &Manager{cfg: cfg, src: src} }

// Ensure makes sure a runner serves network n (starting the helper process
// or the in-process runner if none runs) and, unless that is certain
// already, waits until the server on n's gateway answers as this network's.
// The caller's endpoint record must be there (it keeps n wanted).
//
// It is certain when the runner's status lists n as served (the runner
// stops servers only under start.lock, which Ensure holds while it looks),
// and when Ensure starts the helper itself: it binds n's sockets first and
// hands them over, so a query sent before the helper is ready waits in
// them instead of being refused.
func (m *Manager) Ensure(ctx context.Context, n Network) error {
	m.explain(ctx, n)
	if err := statefile.MkdirAll(m.cfg.dir()); err != nil {
		return err
	}
	lock, err := statefile.Acquire(ctx, filepath.Join(m.cfg.dir(), "start.lock"), false)
	if err != nil {
		return err
	}
	if m.serves(n) {
		lock.Release()
		return m.ensureHostLoopback(ctx)
	}
	started := false
	if m.cfg.InProcess {
		err = m.ensureInProcess(n.Name)
	} else {
		started, err = m.ensureHelper(n)
	}
	lock.Release()
	if err != nil {
		return err
	}
	if err := m.ensureHostLoopback(ctx); err != nil {
		return err
	}
	if started {
		return nil
	}
	return m.wait(ctx, n)
}

// serves reports whether a live runner's status says it serves network n
// on n's gateway; the caller holds start.lock.
func (m *Manager) serves(n Network) bool {
	b, err := statefile.Read(filepath.Join(m.cfg.dir(), "status.json"))
	if err != nil {
		return false
	}
	var st status
	if json.Unmarshal(b, &st) != nil || st.PID <= 0 || st.Serving[n.Name] != n.Gateway.String() {
		return false
	}
	if st.PID == os.Getpid() {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.run != nil
	}
	return m.HelperPID() == st.PID
}

// explain reports what the name server is, as a person would set one up.
func (m *Manager) explain(ctx context.Context, n Network) {
	if !explain.Enabled(ctx) {
		return
	}
	addrs := n.Gateway.String()
	if n.Gateway6.IsValid() {
		addrs += " and " + n.Gateway6.String()
	}
	explain.Say(ctx, "# a DNS server for network %s answers on %s port 53 (udp+tcp) in the host namespace, like aardvark-dns: %s", n.Name, addrs,
		m.cfg.NS.Shell(fmt.Sprintf("dnsmasq --no-resolv --bind-interfaces --listen-address=%s --addn-hosts=HOSTS-OF-%s", n.Gateway, n.Name)))
}

// wait probes the network's server until it answers, the runner reports
// why it cannot serve the network, or the time is up; the probes come
// quickly at first (a runner woken for a new network serves it within a
// millisecond or two). The probe is sent from
// the host namespace, where the gateway address is local: from the sandbox,
// the first ARP request of a link that has just come up is often lost and
// retried only after a second, which would cost every Attach that second.
func (m *Manager) wait(ctx context.Context, n Network) error {
	want := ID(m.cfg.Dir, n.Name)
	addr := netip.AddrPortFrom(n.Gateway, 53)
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var lastErr error
	pause := time.Millisecond
	for {
		id, err := dns.Probe(ctx, Dial(m.cfg.NS), addr, "", 250*time.Millisecond)
		if err == nil && id == want {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("the server on %s answers as %q", addr, id)
		}
		lastErr = err
		var st status
		if b, rerr := statefile.Read(filepath.Join(m.cfg.dir(), "status.json")); rerr == nil {
			if json.Unmarshal(b, &st) == nil && st.Errors[n.Name] != "" {
				msg := st.Errors[n.Name]
				if strings.Contains(msg, "port 53 is taken") {
					return fmt.Errorf("name server (pid %d): %s: %w", st.PID, strings.TrimSuffix(msg, ": "+errkind.InUse.Error()), errkind.InUse)
				}
				return fmt.Errorf("name server (pid %d): %s", st.PID, msg)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the name server of network %q on %s: %w (see %s)", n.Name, addr, lastErr, filepath.Join(m.cfg.dir(), "helper.log"))
		case <-time.After(pause):
		}
		pause = min(2*pause, 32*time.Millisecond)
	}
}

// ensureInProcess runs the Manager's own runner if no runner serves the
// state dir yet, and syncs it; the caller holds start.lock.
func (m *Manager) ensureInProcess(network string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.run == nil {
		lock, ok, err := statefile.TryAcquire(filepath.Join(m.cfg.dir(), "server.lock"))
		if err != nil {
			return err
		}
		if !ok {
			return nil // a helper process serves this state dir; the probe checks it
		}
		r := newRunner(&m.cfg, m.src, lock)
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		m.run = r
		go func() {
			defer close(r.done)
			r.run(r.stop, func() bool { return false }, func() {
				// Under start.lock: nobody can be starting a runner now.
				m.mu.Lock()
				if m.run == r {
					m.run = nil
				}
				m.mu.Unlock()
			})
			r.lock.Release()
		}()
	}
	_, errs := m.run.sync(true)
	return errs[network]
}

// Close stops the in-process runner, if any.
func (m *Manager) Close() {
	m.mu.Lock()
	r := m.run
	m.run = nil
	m.mu.Unlock()
	if r != nil {
		close(r.stop)
		<-r.done
	}
}

// Up reports whether network n's name server answers as this state
// directory's (a probe from the host namespace), and if not, why: what
// runs, what to do. It changes nothing.
func (m *Manager) Up(ctx context.Context, n Network) (bool, string) {
	addr := netip.AddrPortFrom(n.Gateway, 53)
	id, err := dns.Probe(ctx, Dial(m.cfg.NS), addr, "", 500*time.Millisecond)
	if err == nil && id == ID(m.cfg.Dir, n.Name) {
		return true, fmt.Sprintf("the name server of network %q answers on %s", n.Name, addr)
	}
	who := "the in-process name server"
	if !m.cfg.InProcess {
		who = "the DNS helper"
		if pid := m.HelperPID(); pid != 0 {
			who += fmt.Sprintf(" (pid %d)", pid)
		} else {
			who += " (not running: killed?)"
		}
	}
	why := fmt.Sprintf("no answer (%v)", err)
	if err == nil {
		why = fmt.Sprintf("another server answers there (%q)", id)
	}
	return false, fmt.Sprintf("the name server of network %q on %s is down: %s; it is %s (log %s); any sandnet command that touches the network (sandnet reconcile) starts it again",
		n.Name, addr, why, who, filepath.Join(m.cfg.dir(), "helper.log"))
}

// HelperPID returns the PID of the state dir's helper process, or 0 when
// none runs.
func (m *Manager) HelperPID() int {
	b, err := statefile.Read(filepath.Join(m.cfg.dir(), "helper.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || unix.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// ensureHostLoopback brings lo up in the host namespace if it is down (a
// fresh lab namespace), once per Manager: the host reaches the name server
// on the gateway address through it, and so does the readiness probe.
func (m *Manager) ensureHostLoopback(ctx context.Context) error {
	if m.loChecked.Load() {
		return nil
	}
	ns := m.cfg.NS
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	lo, err := nl.LinkByIndex(1)
	if err != nil {
		return fmt.Errorf("looking at lo in %s: %w", ns, err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := iface.LoUp(ctx, ns); err != nil {
			return err
		}
	}
	m.loChecked.Store(true)
	return nil
}
