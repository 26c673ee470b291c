package sandnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/dns"

	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
)

// The name servers of a state dir are run by one dnsRunner at a time: the
// helper process (DNSHelper) or a Host's goroutine (DNSInProcess). Files
// under STATEDIR/dns:
//
//	server.lock  held (flock) by the runner for as long as it runs
//	start.lock   taken while starting a runner, and by a runner deciding to
//	             stop, so a runner never stops under an Attach that needs it
//	status.json  the runner's PID and the networks it could not serve, with why
//	helper.pid, helper.log   the helper process's PID and its stdout/stderr
const (
	dnsPollInterval = 200 * time.Millisecond
	dnsReadyTimeout = 15 * time.Second
)

func (h *Host) dnsDir() string { return filepath.Join(h.dir, "dns") }

// dnsID is what a network's server answers to a probe: it names the network
// and the state dir, so a probe is sure the server is the right one.
func dnsID(dir, network string) string {
	sum := sha256.Sum256([]byte(dir))
	return "sandnet dir=" + hex.EncodeToString(sum[:6]) + " net=" + network
}

// dnsStatus is the runner's status file.
type dnsStatus struct {
	PID    int               `json:"pid"`
	Errors map[string]string `json:"errors,omitempty"`
}

// dnsRunner serves every bridge network of a state dir that has an
// endpoint needing its name server.
type dnsRunner struct {
	h    *Host // the namespace, the state dir and the DNS config
	lock *os.File

	mu      sync.Mutex
	servers map[string]*netServer
	status  dnsStatus

	ups     atomic.Pointer[[]netip.AddrPort]
	upStamp [2]recordStamp

	stop, done chan struct{} // the in-process runner's
}

// netServer is one network's name server (one per gateway address).
type netServer struct {
	def     Network
	servers []*dns.Server
}

func newDNSRunner(h *Host, lock *os.File) *dnsRunner {
	r := &dnsRunner{h: h, lock: lock, servers: map[string]*netServer{}}
	r.refreshUpstreams()
	return r
}

// needsDNS reports whether a network's server must run: some endpoint is
// being attached (it may need it) or uses the server (its DNS lists the
// gateway). It reads records only until one says so, usually the first:
// the runner asks every dnsPollInterval, whatever the number of endpoints.
func (h *Host) needsDNS(rec *networkRecord) bool {
	if !h.usesEmbeddedDNS(&rec.Network) {
		return false
	}
	n := &rec.Network
	return h.anyEndpointRecord(n.Name, func(e *endpointRecord) bool {
		return e.State == stateAttaching || slices.Contains(e.Endpoint.DNS, n.Gateway) ||
			(n.Gateway6.IsValid() && slices.Contains(e.Endpoint.DNS, n.Gateway6))
	})
}

// sync starts the servers that are needed and stops the others; it returns
// how many networks need serving and the error of each that could not be
// served (retried on the next sync, while an endpoint still needs it).
func (r *dnsRunner) sync() (int, map[string]error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshUpstreams()
	recs, _ := r.h.listNetworkRecords()
	want := map[string]*networkRecord{}
	for _, rec := range recs {
		if r.h.needsDNS(rec) {
			want[rec.Network.Name] = rec
		}
	}
	for name, s := range r.servers {
		if rec := want[name]; rec == nil || fmt.Sprint(rec.Network) != fmt.Sprint(s.def) {
			s.close()
			delete(r.servers, name)
			r.h.log.Info("dns: stopped serving", "network", name)
		}
	}
	errs := map[string]error{}
	for name, rec := range want {
		if r.servers[name] != nil {
			continue
		}
		s, err := r.start(rec)
		if err != nil {
			errs[name] = err
			continue
		}
		r.servers[name] = s
		r.h.log.Info("dns: serving", "network", name, "gateway", rec.Network.Gateway)
	}
	st := dnsStatus{PID: os.Getpid()}
	for name, err := range errs {
		if st.Errors == nil {
			st.Errors = map[string]string{}
		}
		st.Errors[name] = err.Error()
	}
	if fmt.Sprint(st) != fmt.Sprint(r.status) {
		r.status = st
		if err := statefile.WriteJSON(filepath.Join(r.h.dnsDir(), "status.json"), st); err != nil {
			r.h.log.Warn("dns: writing status", "err", err)
		}
	}
	return len(want), errs
}

// start listens on the network's gateway addresses; all or nothing.
func (r *dnsRunner) start(rec *networkRecord) (*netServer, error) {
	n := rec.Network
	src := &stateSource{h: r.h, network: n.Name}
	cfg := dns.Config{
		Names:   src,
		Subnets: []netip.Prefix{n.Subnet, n.Subnet6},
		Dial:    nsDial(r.h.ns), // upstream queries leave from the host namespace: its routes and its loopback stub apply
		ID:      dnsID(r.h.dir, n.Name),
		Logger:  r.h.log,
	}
	if !n.Internal {
		cfg.Upstreams = func() []netip.AddrPort { return *r.ups.Load() }
	}
	s := &netServer{def: n}
	for _, gw := range []netip.Addr{n.Gateway, n.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		srv, err := dns.Listen(r.h.ns, gw, 53, cfg)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("starting the name server of network %q: %w", n.Name, err)
		}
		s.servers = append(s.servers, srv)
	}
	return s, nil
}

func (s *netServer) close() {
	for _, srv := range s.servers {
		srv.Close()
	}
}

// closeAll stops every server.
func (r *dnsRunner) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, s := range r.servers {
		s.close()
		delete(r.servers, name)
	}
}

// refreshUpstreams re-reads the host's resolver configuration when it
// changed. Loopback stubs are replaced by the real upstream servers; only if
// there are none does the server forward to the stub itself, which it can
// reach since it runs in the host namespace.
func (r *dnsRunner) refreshUpstreams() {
	if ups := r.h.dnsCfg.upstreams; len(ups) > 0 {
		r.ups.Store(&ups)
		return
	}
	files := r.h.dnsCfg.files
	if files.ResolvConf == "" {
		files.ResolvConf = dns.HostResolvConf
	}
	if files.ResolvedConf == "" {
		files.ResolvedConf = dns.ResolvedConf
	}
	s0, _ := stampOf(files.ResolvConf)
	s1, _ := stampOf(files.ResolvedConf)
	if r.ups.Load() != nil && r.upStamp == [2]recordStamp{s0, s1} {
		return
	}
	r.upStamp = [2]recordStamp{s0, s1}
	rc, stubs, err := dns.ReadHost(files)
	if err != nil {
		r.h.log.Warn("dns: reading the host's resolver configuration", "err", err)
	}
	servers := rc.Nameservers
	if len(servers) == 0 {
		servers = stubs
	}
	ups := make([]netip.AddrPort, 0, len(servers))
	for _, a := range servers {
		ups = append(ups, netip.AddrPortFrom(a, 53))
	}
	r.ups.Store(&ups)
}

// run syncs every dnsPollInterval until nothing is served any more (checked
// again under start.lock, so no Attach starting meanwhile is left without a
// server), stop is closed, or gone reports that the state dir or the host
// namespace went away. It closes the servers before returning; the caller
// releases the server lock.
func (r *dnsRunner) run(stop <-chan struct{}, gone func() bool, onStop func()) {
	t := time.NewTicker(dnsPollInterval)
	defer t.Stop()
	defer r.closeAll()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if gone() {
			r.h.log.Info("dns: state dir or host namespace gone, stopping")
			return
		}
		if n, _ := r.sync(); n > 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lock, err := statefile.Acquire(ctx, filepath.Join(r.h.dnsDir(), "start.lock"), false)
		cancel()
		if err != nil {
			continue
		}
		if n, _ := r.sync(); n == 0 {
			r.h.log.Info("dns: no endpoint needs a name server any more, stopping")
			r.closeAll()
			if onStop != nil {
				onStop()
			}
			lock.Release()
			return
		}
		lock.Release()
	}
}

// stateSource is a network's names, read from its endpoint records in the
// state dir (the source of truth, shared by every process), reloaded when
// the directory changes.
type stateSource struct {
	h       *Host
	network string
	mu      sync.Mutex
	snap    atomic.Pointer[sourceSnap]
}

type sourceSnap struct {
	t      *dns.Table
	mtime  time.Time
	loaded time.Time
}

// mtimeSlack covers the coarse clock behind directory mtimes (one tick):
// a change within it of the last reload might not move the mtime, so the
// table is reloaded until the mtime is that much older than the reload.
const mtimeSlack = 50 * time.Millisecond

// Table costs one stat(2) when nothing changed.
func (s *stateSource) Table() *dns.Table {
	fi, err := os.Stat(s.h.endpointDir(s.network))
	if err != nil {
		return dns.NewTable(nil)
	}
	mt := fi.ModTime()
	if c := s.snap.Load(); c != nil && c.mtime.Equal(mt) && c.loaded.Sub(mt) > mtimeSlack {
		return c.t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.snap.Load(); c != nil && c.mtime.Equal(mt) && c.loaded.Sub(mt) > mtimeSlack {
		return c.t
	}
	now := time.Now()
	recs, err := s.h.listEndpointRecords(s.network)
	if err != nil {
		s.h.log.Warn("dns: reading endpoint records", "network", s.network, "err", err)
	}
	var rs []dns.Record
	for _, r := range recs {
		ep := &r.Endpoint
		var addrs []netip.Addr
		for _, p := range ep.Addresses {
			addrs = append(addrs, p.Addr())
		}
		rs = append(rs, dns.Record{Names: dnsNames(ep), Addrs: addrs})
	}
	t := dns.NewTable(rs)
	s.snap.Store(&sourceSnap{t: t, mtime: mt, loaded: now})
	return t
}

// ensureDNSServer makes sure a runner serves network rec for the state dir
// (starting the helper process or the in-process runner if none runs) and
// waits until the server on the gateway answers as this network's.
func (h *Host) ensureDNSServer(ctx context.Context, rec *networkRecord, sb *netns.NS) error {
	n := &rec.Network
	explainDNSServer(ctx, h, n)
	if err := statefile.MkdirAll(h.dnsDir()); err != nil {
		return err
	}
	lock, err := statefile.Acquire(ctx, filepath.Join(h.dnsDir(), "start.lock"), false)
	if err != nil {
		return err
	}
	if h.dnsCfg.mode == DNSInProcess {
		err = h.ensureInProcess(n.Name)
	} else {
		err = h.ensureHelper()
	}
	lock.Release()
	if err != nil {
		return err
	}
	if err := h.ensureHostLoopback(ctx); err != nil {
		return err
	}
	return h.waitDNS(ctx, n, sb)
}

// waitDNS probes the network's server until it answers, the runner reports
// why it cannot serve the network, or the time is up. The probe is sent from
// the host namespace, where the gateway address is local: from the sandbox,
// the first ARP request of a link that has just come up is often lost and
// retried only after a second, which would cost every Attach that second.
func (h *Host) waitDNS(ctx context.Context, n *Network, _ *netns.NS) error {
	want := dnsID(h.dir, n.Name)
	addr := netip.AddrPortFrom(n.Gateway, 53)
	ctx, cancel := context.WithTimeout(ctx, dnsReadyTimeout)
	defer cancel()
	var lastErr error
	for {
		id, err := dns.Probe(ctx, nsDial(h.ns), addr, "", 250*time.Millisecond)
		if err == nil && id == want {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("the server on %s answers as %q", addr, id)
		}
		lastErr = err
		var st dnsStatus
		if b, rerr := statefile.Read(filepath.Join(h.dnsDir(), "status.json")); rerr == nil {
			if json.Unmarshal(b, &st) == nil && st.Errors[n.Name] != "" {
				msg := st.Errors[n.Name]
				if strings.Contains(msg, "port 53 is taken") {
					return fmt.Errorf("name server (pid %d): %s: %w", st.PID, strings.TrimSuffix(msg, ": "+ErrInUse.Error()), ErrInUse)
				}
				return fmt.Errorf("name server (pid %d): %s", st.PID, msg)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the name server of network %q on %s: %w (see %s)", n.Name, addr, lastErr, filepath.Join(h.dnsDir(), "helper.log"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nsDial returns a dial function whose connections come from namespace ns.
func nsDial(ns *netns.NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// ensureInProcess runs the Host's own runner if no runner serves the state
// dir yet, and syncs it; the caller holds start.lock.
func (h *Host) ensureInProcess(network string) error {
	h.dnsMu.Lock()
	defer h.dnsMu.Unlock()
	if h.dnsRun == nil {
		f, ok, err := tryLock(filepath.Join(h.dnsDir(), "server.lock"))
		if err != nil {
			return err
		}
		if !ok {
			return nil // a helper process serves this state dir; the probe checks it
		}
		r := newDNSRunner(h, f)
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		h.dnsRun = r
		go func() {
			defer close(r.done)
			r.run(r.stop, func() bool { return false }, func() {
				// Under start.lock: nobody can be starting a runner now.
				h.dnsMu.Lock()
				if h.dnsRun == r {
					h.dnsRun = nil
				}
				h.dnsMu.Unlock()
			})
			r.lock.Close()
		}()
	}
	_, errs := h.dnsRun.sync()
	return errs[network]
}

// stopDNS stops the in-process runner, if any.
func (h *Host) stopDNS() {
	h.dnsMu.Lock()
	r := h.dnsRun
	h.dnsRun = nil
	h.dnsMu.Unlock()
	if r != nil {
		close(r.stop)
		<-r.done
	}
}

// tryLock takes an exclusive flock on path without waiting; ok is false
// when someone (another process, or another open of it in this one) holds it.
func tryLock(path string) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := flockNB(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, true, nil
}

// ensureHostLoopback brings lo up in the host namespace if it is down (a
// fresh lab namespace), once per Host: the host reaches the name server on
// the gateway address through it, and so does the readiness probe.
func (h *Host) ensureHostLoopback(ctx context.Context) error {
	if h.loChecked.Load() {
		return nil
	}
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	lo, err := nl.LinkByIndex(1)
	if err != nil {
		return fmt.Errorf("looking at lo in %s: %w", h.ns, err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := loUp(ctx, h.ns, nl); err != nil {
			return err
		}
	}
	h.loChecked.Store(true)
	return nil
}
