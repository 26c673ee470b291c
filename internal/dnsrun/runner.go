package dnsrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
)

const (
	pollInterval = 200 * time.Millisecond
	readyTimeout = 15 * time.Second
)

// Network is what the runner needs to know to serve a network.
type Network struct {
	Name              string
	Subnet, Subnet6   netip.Prefix
	Gateway, Gateway6 netip.Addr
	// Bridge is the interface the network's queries arrive on: the server
	// answers only those (source in the subnets) and the host's own.
	Bridge string
	// Internal networks' servers do not forward, unless Forward asks them to.
	Internal, Forward bool
}

// Source tells the runner what to serve.
type Source interface {
	// Networks returns the networks whose name server must run now.
	Networks() []Network
	// Names returns network's names; the runner closes the source (if it
	// is an io.Closer) when it stops serving the network.
	Names(network string) (dns.Source, error)
}

// Config is what a runner needs.
type Config struct {
	// Dir is the state directory; the runner's files are in Dir/dns.
	Dir string
	// NS is the host namespace: the servers listen there, and forward from
	// there (its routes and its loopback stub apply).
	NS *netns.NS
	// Logger receives the runner's messages.
	Logger *slog.Logger
	// Files are where the host's resolver configuration is read.
	Files dns.HostFiles
	// Upstreams, when set, replace the host's servers as forwarders.
	Upstreams []netip.AddrPort
	// InProcess serves from this process (while it runs) instead of a
	// helper process.
	InProcess bool
}

func (c *Config) dir() string { return filepath.Join(c.Dir, "dns") }

// ID is what a network's server answers to a probe: it names the network
// and the state dir, so a probe is sure the server is the right one.
func ID(dir, network string) string {
	sum := sha256.Sum256([]byte(dir))
	return "sandnet dir=" + hex.EncodeToString(sum[:6]) + " net=" + network
}

// Dial returns a dial function whose connections come from namespace ns.
func Dial(ns *netns.NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
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

// status is the runner's status file.
type status struct {
	PID    int               `json:"pid"`
	Errors map[string]string `json:"errors,omitempty"`
	// Serving names each network whose server listens, with its gateway.
	// The runner stops a server only under start.lock, so an Ensure that
	// holds start.lock and finds its network here (and the runner alive)
	// needs no probe: the server cannot go before the caller's endpoint
	// record, which keeps it wanted, is there.
	Serving map[string]string `json:"serving,omitempty"`
}

// runner serves every network its Source lists.
type runner struct {
	cfg  *Config
	src  Source
	lock *statefile.Lock // server.lock

	mu      sync.Mutex
	servers map[string]*netServer
	status  status

	ups     atomic.Pointer[[]netip.AddrPort]
	upStamp [2]statefile.Stamp

	stop, done chan struct{} // the in-process runner's
	wake       chan struct{} // a sync is wanted now: an Ensure needs a network served

	// inherited are sockets that the process which started the helper
	// bound for it, by address; start serves them instead of binding.
	inherited map[netip.AddrPort]*dns.Sockets
}

// netServer is one network's name server (one per gateway address).
type netServer struct {
	def     Network
	names   dns.Source
	servers []*dns.Server
}

func newRunner(cfg *Config, src Source, lock *statefile.Lock) *runner {
	r := &runner{cfg: cfg, src: src, lock: lock, servers: map[string]*netServer{}, wake: make(chan struct{}, 1)}
	r.refreshUpstreams()
	return r
}

// closeInherited closes the inherited sockets that no server took.
func (r *runner) closeInherited() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ap, so := range r.inherited {
		so.Close()
		delete(r.inherited, ap)
	}
}

// sync starts the servers that are needed and stops the others; it returns
// how many networks need serving and the error of each that could not be
// served (retried on the next sync, while an endpoint still needs it).
// Servers are stopped under start.lock (see status.Serving): haveStartLock
// says whether the caller holds it; if not, sync takes it when it has a
// server to stop, and if it cannot, stops nothing this time.
func (r *runner) sync(haveStartLock bool) (int, map[string]error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshUpstreams()
	want := r.wanted()
	if !haveStartLock && r.anyToStop(want) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		lock, err := statefile.Acquire(ctx, filepath.Join(r.cfg.dir(), "start.lock"), false)
		cancel()
		if err == nil {
			defer lock.Release()
			want = r.wanted() // again: an Ensure may have come in between
		} else {
			for name, s := range r.servers {
				if _, ok := want[name]; !ok {
					want[name] = s.def
				}
			}
		}
	}
	log := r.cfg.Logger
	for name, s := range r.servers {
		if n, ok := want[name]; !ok || n != s.def {
			s.close()
			delete(r.servers, name)
			log.Info("dns: stopped serving", "network", name)
		}
	}
	errs := map[string]error{}
	for name, n := range want {
		if r.servers[name] != nil {
			continue
		}
		s, err := r.start(n)
		if err != nil {
			errs[name] = err
			continue
		}
		r.servers[name] = s
		log.Info("dns: serving", "network", name, "gateway", n.Gateway)
	}
	st := status{PID: os.Getpid()}
	for name, err := range errs {
		if st.Errors == nil {
			st.Errors = map[string]string{}
		}
		st.Errors[name] = err.Error()
	}
	for name, s := range r.servers {
		if st.Serving == nil {
			st.Serving = map[string]string{}
		}
		st.Serving[name] = s.def.Gateway.String()
	}
	if fmt.Sprint(st) != fmt.Sprint(r.status) {
		r.status = st
		if err := statefile.WriteJSON(filepath.Join(r.cfg.dir(), "status.json"), st); err != nil {
			log.Warn("dns: writing status", "err", err)
		}
	}
	return len(want), errs
}

// wanted is the networks the Source says need a server now.
func (r *runner) wanted() map[string]Network {
	want := map[string]Network{}
	for _, n := range r.src.Networks() {
		want[n.Name] = n
	}
	return want
}

// anyToStop reports whether a running server is not wanted as it is.
func (r *runner) anyToStop(want map[string]Network) bool {
	for name, s := range r.servers {
		if n, ok := want[name]; !ok || n != s.def {
			return true
		}
	}
	return false
}

// start listens on the network's gateway addresses (or serves the sockets
// inherited for them); all or nothing.
func (r *runner) start(n Network) (*netServer, error) {
	names, err := r.src.Names(n.Name)
	if err != nil {
		return nil, fmt.Errorf("starting the name server of network %q: %w", n.Name, err)
	}
	cfg := dns.Config{
		Names:   names,
		Subnets: []netip.Prefix{n.Subnet, n.Subnet6},
		// The network's sandboxes only: the source in its subnets, arriving
		// on its bridge (or the host's own queries, on lo).
		Clients:   []netip.Prefix{n.Subnet, n.Subnet6},
		Interface: n.Bridge,
		Dial:      Dial(r.cfg.NS), // upstream queries leave from the host namespace: its routes and its loopback stub apply
		ID:        ID(r.cfg.Dir, n.Name),
		Logger:    r.cfg.Logger,
		// The helper process does nothing else: its readers keep their
		// threads while queries come (see dns.Config.OwnThread).
		OwnThread: !r.cfg.InProcess,
	}
	if !n.Internal || n.Forward {
		cfg.Upstreams = func() []netip.AddrPort { return *r.ups.Load() }
	}
	s := &netServer{def: n, names: names}
	for _, gw := range []netip.Addr{n.Gateway, n.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		var srv *dns.Server
		if so := r.inherited[netip.AddrPortFrom(gw, 53)]; so != nil {
			delete(r.inherited, so.Addr)
			so.NS = r.cfg.NS
			srv, err = dns.Serve(so, cfg)
		} else {
			srv, err = dns.Listen(r.cfg.NS, gw, 53, cfg)
		}
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
	if c, ok := s.names.(io.Closer); ok {
		c.Close()
	}
}

// closeAll stops every server.
func (r *runner) closeAll() {
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
func (r *runner) refreshUpstreams() {
	if ups := r.cfg.Upstreams; len(ups) > 0 {
		r.ups.Store(&ups)
		return
	}
	files := r.cfg.Files
	if files.ResolvConf == "" {
		files.ResolvConf = dns.HostResolvConf
	}
	if files.ResolvedConf == "" {
		files.ResolvedConf = dns.ResolvedConf
	}
	s0, _ := statefile.StampOf(files.ResolvConf)
	s1, _ := statefile.StampOf(files.ResolvedConf)
	if r.ups.Load() != nil && r.upStamp == [2]statefile.Stamp{s0, s1} {
		return
	}
	r.upStamp = [2]statefile.Stamp{s0, s1}
	rc, stubs, err := dns.ReadHost(files)
	if err != nil {
		r.cfg.Logger.Warn("dns: reading the host's resolver configuration", "err", err)
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

// run syncs every pollInterval until nothing is served any more (checked
// again under start.lock, so no Attach starting meanwhile is left without a
// server), stop is closed, or gone reports that the state dir or the host
// namespace went away. It closes the servers before returning. When nothing
// is served any more it releases the server lock itself, after onStop;
// otherwise the caller does.
func (r *runner) run(stop <-chan struct{}, gone func() bool, onStop func()) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	defer r.closeAll()
	log := r.cfg.Logger
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-r.wake:
		}
		if gone() {
			log.Info("dns: state dir or host namespace gone, stopping")
			return
		}
		if n, _ := r.sync(false); n > 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lock, err := statefile.Acquire(ctx, filepath.Join(r.cfg.dir(), "start.lock"), false)
		cancel()
		if err != nil {
			continue
		}
		if n, _ := r.sync(true); n == 0 {
			log.Info("dns: no endpoint needs a name server any more, stopping")
			r.closeAll()
			if onStop != nil {
				onStop()
			}
			// server.lock goes before start.lock: an Ensure that takes
			// start.lock next must find it free and start a new server,
			// not take this stopping one for alive and wait on it.
			r.lock.Release()
			lock.Release()
			return
		}
		lock.Release()
	}
}
