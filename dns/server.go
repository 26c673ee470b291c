package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/netns"
)

// DefaultDomain is the domain the sandboxes' names are also answered under
// ("web" and "web.sandnet.internal" are the same name). ".internal" is
// reserved for private use (ICANN, 2024), so it never collides with a real
// name.
const DefaultDomain = "sandnet.internal"

// ProbeName is a TXT name every sandnet server answers with its Config.ID,
// so a client can tell that the server on an address is the one it expects
// (and not some other DNS server that holds the port).
const ProbeName = "_sandnet-server"

// DefaultForwardTimeout bounds the time spent on the upstream servers for
// one query: after it the client gets SERVFAIL, well before a stub
// resolver gives up (glibc waits 5 s).
const DefaultForwardTimeout = 1800 * time.Millisecond

// Config describes one network's name server.
type Config struct {
	// Names are the network's sandboxes.
	Names Source
	// Domain is answered authoritatively: NAME.Domain is NAME, and names under
	// it that are not in Names get NXDOMAIN. Default DefaultDomain.
	Domain string
	// Subnets are the network's subnets: reverse (PTR) lookups of addresses in
	// them are answered here, NXDOMAIN when unknown; other reverse lookups are
	// forwarded.
	Subnets []netip.Prefix
	// Clients are the source addresses served (the network's subnets);
	// queries from anywhere else are dropped unanswered. Empty: any source.
	Clients []netip.Prefix
	// Interface, when set, is the interface (the network's bridge) whose
	// UDP queries are served, besides the host's own over loopback; a query
	// arriving on any other interface is dropped unanswered. See
	// clients.go for why TCP needs only the source check.
	Interface string
	// Upstreams returns the servers to forward other names to, tried in
	// order. Nil means the server does not forward (an internal network's):
	// names that are not the network's get NXDOMAIN. An empty list means
	// forwarding is wanted but no server is known: SERVFAIL.
	Upstreams func() []netip.AddrPort
	// Dial opens connections to the upstream servers; the server's caller
	// chooses the namespace they come from. Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ForwardTimeout bounds forwarding of one query; default DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// TTL of the answers about sandboxes; default 0: names change with
	// every Attach and Detach, so nothing should cache them.
	TTL uint32
	// ID is answered to TXT queries for ProbeName.Domain.
	ID string
	// Logger gets a debug line per failed forward; default: discard.
	Logger *slog.Logger
	// OwnThread is for a process that does little but serve DNS (the
	// helper process): while queries keep coming, the UDP reader waits for
	// them in the kernel without handing its thread's P back to the
	// runtime, as a C server's loop would, which saves a hand-off between
	// threads and a wake-up of the runtime's monitor per batch. The server
	// raises GOMAXPROCS by one while it runs, so the process's other
	// goroutines keep as many Ps as before. Default false: the reader
	// gives its P up whenever it sleeps, which suits a server that shares
	// its process.
	OwnThread bool
}

// Server is a running name server on one address (UDP and TCP).
//
// UDP is served by one reader, taking a batch of queries per system call
// (recvmmsg) and sending the batch's answers in one (sendmmsg) (see
// Config.OwnThread for how it sleeps in the helper); the common query (A
// or AAAA of a sandbox) is
// answered from its wire form without unpacking it, forwarded queries go
// through the forwarder (a pool of upstream sockets, no goroutine per
// query), whose answers the same reader relays. TCP is served by
// miekg/dns.
type Server struct {
	cfg     Config
	addr    netip.AddrPort
	udp     *udpSocket
	udpDone chan struct{} // closed when the UDP reader returns
	tcp     *mdns.Server
	fwd     *forwarder
	domain  string // lower-case, with leading and trailing dots: ".sandnet.internal."
	suffix  string // the domain in key form, with a leading dot: ".sandnet.internal"
	policy  *clientPolicy
	close   sync.Once
}

// Listen binds UDP and TCP on addr:port inside namespace ns (the sockets
// keep belonging to ns) and starts serving them. Either both sockets are
// bound and served, or nothing is left open. A port that is taken is
// ErrInUse.
//
// Equivalent to: starting a DNS server (dnsmasq, aardvark-dns) on ADDR:53
// inside ns.
func Listen(ns *netns.NS, addr netip.Addr, port int, cfg Config) (*Server, error) {
	if cfg.Names == nil {
		return nil, fmt.Errorf("dns server: no name source: %w", ErrInvalid)
	}
	so, err := Bind(ns, addr, port)
	if err != nil {
		return nil, err
	}
	return Serve(so, cfg)
}

// Sockets are a server's bound sockets before anything serves them: Bind
// makes them, Serve serves them. A process can bind them and hand them (as
// files) to another that serves them, like socket activation: queries that
// come in between wait in the sockets instead of being refused.
type Sockets struct {
	Addr     netip.AddrPort
	UDP, TCP *os.File
	// NS is the namespace they were bound in (where Config.Interface is
	// looked up); a process that gets them from another sets it.
	NS *netns.NS
}

// Close closes sockets that were not handed to Serve.
func (so *Sockets) Close() error {
	return errors.Join(so.UDP.Close(), so.TCP.Close())
}

// Bind binds UDP and TCP on addr:port inside namespace ns, listening but
// not served yet; both or neither. A port that is taken is ErrInUse.
//
// Equivalent to: the sockets of a systemd socket unit for ADDR:53 in ns.
func Bind(ns *netns.NS, addr netip.Addr, port int) (*Sockets, error) {
	ap := netip.AddrPortFrom(addr, uint16(port))
	var udp, tcp int
	err := ns.Do(func() error {
		var err error
		if udp, err = bindSocket(ap, unix.SOCK_DGRAM); err != nil {
			return err
		}
		if tcp, err = bindSocket(ap, unix.SOCK_STREAM); err != nil {
			unix.Close(udp)
			return err
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listening for DNS on %s in %s: port %d is taken by another server (find it with: %s): %w",
				ap, ns, port, ns.Shell(fmt.Sprintf("ss -lunp 'sport = :%d'", port)), ErrInUse)
		}
		return nil, fmt.Errorf("listening for DNS on %s in %s: %w", ap, ns, err)
	}
	return &Sockets{Addr: ap, UDP: os.NewFile(uintptr(udp), "dns-udp:"+ap.String()), TCP: os.NewFile(uintptr(tcp), "dns-tcp:"+ap.String()), NS: ns}, nil
}

// Serve serves sockets that Bind made (in this process or another that
// passed them on); it owns them from now on, and closes them on error.
func Serve(so *Sockets, cfg Config) (*Server, error) {
	if cfg.Names == nil {
		so.Close()
		return nil, fmt.Errorf("dns server: no name source: %w", ErrInvalid)
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ln, err := net.FileListener(so.TCP) // a duplicate, served by the runtime
	so.TCP.Close()
	if err != nil {
		so.UDP.Close()
		return nil, fmt.Errorf("serving DNS on %s: %w", so.Addr, err)
	}
	policy := &clientPolicy{ns: so.NS, clients: cfg.Clients, iface: cfg.Interface}
	fd, err := unix.FcntlInt(so.UDP.Fd(), unix.F_DUPFD_CLOEXEC, 0) // blocking, read by its own thread
	so.UDP.Close()
	if err == nil {
		err = enablePktinfo(fd, so.Addr.Addr().Is6())
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("serving DNS on %s: %w", so.Addr, err)
	}
	dom := strings.ToLower(strings.Trim(cfg.Domain, "."))
	s := &Server{cfg: cfg, addr: so.Addr, domain: "." + dom + ".", suffix: "." + dom, policy: policy}
	s.udp, s.udpDone = &udpSocket{fd: fd, ownThread: cfg.OwnThread}, make(chan struct{})
	s.fwd = newForwarder(&s.cfg, s.udp)
	if cfg.OwnThread {
		addProcs(1)
	}
	// One reader: it takes whatever has queued in one call, and a second
	// reader on the same socket only adds wake-ups and contention (measured:
	// one reader answers 30-50% more queries, with a third of the p99).
	go s.serveUDP()
	s.tcp = &mdns.Server{Listener: &filteredListener{Listener: ln, p: policy}, Handler: s, ReadTimeout: 5 * time.Second}
	started := make(chan struct{})
	s.tcp.NotifyStartedFunc = func() { close(started) }
	go s.tcp.ActivateAndServe()
	<-started
	return s, nil
}

// procsMu serializes changes of GOMAXPROCS by servers (Config.OwnThread).
var procsMu sync.Mutex

// addProcs adds d to GOMAXPROCS.
func addProcs(d int) {
	procsMu.Lock()
	defer procsMu.Unlock()
	runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)+d))
}

// Addr is the address and port served.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Close stops serving and closes the sockets; idempotent.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = errors.Join(s.udp.close(s.udpDone), s.tcp.ShutdownContext(ctx))
		s.fwd.close()
		if s.cfg.OwnThread {
			addProcs(-1)
		}
	})
	return err
}

// ServeDNS answers one query that came over TCP (UDP has its own loop, the
// same answers): a sandbox name from Names, NXDOMAIN for an unknown name of
// the network (a single label, or under Domain, or a reverse name in
// Subnets), else the upstream servers' answer.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	resp, fwd := s.answer(s.cfg.Names.Table(), req)
	switch {
	case fwd && s.cfg.Upstreams == nil:
		resp = noForward(req)
	case fwd:
		resp = s.forwardSync(req, "tcp")
	}
	if resp != nil {
		w.WriteMsg(resp)
	}
}

// serveUDP is the UDP reader: a batch of queries in, their answers out,
// until the socket is closed. While forwarded queries are out, it also
// relays their answers as they come (see forwarder.relay).
func (s *Server) serveUDP() {
	defer close(s.udpDone)
	b := newUDPBatch(64, 4096)
	var (
		ub  *udpBatch // upstream answers
		fds []unix.PollFd
	)
	nameBuf := make([]byte, 0, 256)
	for !s.udp.closed.Load() {
		var (
			n   int
			err error
		)
		if s.fwd.waiting() {
			if ub == nil {
				ub = newUDPBatch(32, 4096)
			}
			s.fwd.relay(ub)
			if n, err = s.udp.recvNow(b); n == 0 && err == nil {
				s.fwd.wait(s.udp, &fds)
				continue
			}
		} else {
			n, err = s.udp.recv(b)
		}
		if err != nil {
			if s.udp.closed.Load() {
				return
			}
			s.cfg.Logger.Debug("dns: reading queries", "addr", s.addr, "err", err)
			continue
		}
		// Only the network's clients, arriving on its bridge, or the host
		// itself (see clients.go): the others are dropped unanswered.
		for i := range n {
			if !s.policy.datagram(b.peers[i].addr(), arrivalIndex(b.control(i))) {
				b.in[i].len = 0
			}
		}
		// One table for the batch: every query in it arrived before this
		// call, so every change made before any of them is in it.
		t := s.cfg.Names.Table()
		k := 0
		for i := range n {
			if b.in[i].len == 0 {
				continue // dropped, or empty
			}
			resp := s.handleUDP(t, b.bufs[i][:b.in[i].len], &b.peers[i], b.resp[i][:0], nameBuf)
			if len(resp) == 0 {
				continue
			}
			b.resp[i] = resp[:0]
			b.reply(k, i, resp)
			k++
		}
		s.udp.send(b, k)
	}
}

// handleUDP answers one UDP query into out, or returns nil when there is no
// answer to send now (a forwarded query is answered when upstream answers).
func (s *Server) handleUDP(t *Table, req []byte, from *rawAddr, out, nameBuf []byte) []byte {
	var q wireQuery
	if parseQuery(req, nameBuf, &q) {
		// The decisions of answer, on the wire form.
		if key, local := s.localKey(t, q.name); local {
			if q.qtype == mdns.TypeA || q.qtype == mdns.TypeAAAA {
				addrs, known := t.lookupBytes(key)
				rcode := mdns.RcodeSuccess // the name exists, perhaps not with this type
				if !known {
					rcode = mdns.RcodeNameError
				}
				if resp := appendReply(out, req, &q, rcode, addrs, s.cfg.TTL); resp != nil {
					return resp
				}
			}
		} else if !isReverse(q.name) && s.cfg.Upstreams != nil {
			s.forwardUDP(req, *from)
			return nil
		}
	}
	if len(req) >= 3 && req[2]&0x80 != 0 {
		return nil // a response: never answer one
	}
	m := new(mdns.Msg)
	if m.Unpack(req) != nil {
		return nil
	}
	resp, fwd := s.answer(t, m)
	if fwd && s.cfg.Upstreams == nil {
		resp = noForward(m)
	} else if fwd {
		s.forwardUDP(req, *from)
		return nil
	}
	if resp == nil {
		return nil
	}
	size := mdns.MinMsgSize
	if o := m.IsEdns0(); o != nil {
		size = int(o.UDPSize())
	}
	resp.Truncate(size)
	b, err := resp.PackBuffer(out)
	if err != nil {
		return nil
	}
	return b
}

// noForward is the answer of a server that does not forward (an internal
// network's) to a name that is not its network's: NXDOMAIN.
func noForward(req *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	return m.SetRcode(req, mdns.RcodeNameError)
}

// forwardUDP hands a UDP client's query (copied) to the forwarder, which
// sends the answer to from.
func (s *Server) forwardUDP(req []byte, from rawAddr) {
	s.fwd.forward(append([]byte(nil), req...), from)
}

// localKey is local on a name in key form: the name's table key, and
// whether the name is the network's.
func (s *Server) localKey(t *Table, name []byte) ([]byte, bool) {
	switch {
	case len(name) > len(s.suffix) && string(name[len(name)-len(s.suffix):]) == s.suffix:
		return name[:len(name)-len(s.suffix)], true
	case !containsDot(name):
		return name, true
	}
	_, ok := t.lookupBytes(name)
	return name, ok
}

// isReverse reports whether a name in key form is a reverse (PTR) name.
func isReverse(name []byte) bool {
	return bytes.HasSuffix(name, []byte(".in-addr.arpa")) || bytes.HasSuffix(name, []byte(".ip6.arpa"))
}

func containsDot(b []byte) bool {
	for _, c := range b {
		if c == '.' {
			return true
		}
	}
	return false
}

// answer answers req from the network's names, or reports that it must be
// forwarded.
func (s *Server) answer(t *Table, req *mdns.Msg) (resp *mdns.Msg, forward bool) {
	if req.Opcode != mdns.OpcodeQuery || len(req.Question) != 1 {
		m := new(mdns.Msg)
		return m.SetRcode(req, mdns.RcodeNotImplemented), false
	}
	q := req.Question[0]
	name := strings.ToLower(mdns.Fqdn(q.Name))
	local, ok := s.local(t, name)
	if ok {
		return s.answerLocal(t, req, q, local), false
	}
	if ptr, ok := s.reverse(t, name); ok {
		return s.answerPTR(t, req, q, ptr), false
	}
	return nil, true
}

// local returns the sandbox name a query name is about, if it is one of the
// network's: a single label, a name in the table, or a name under Domain.
func (s *Server) local(t *Table, name string) (string, bool) {
	short := strings.TrimSuffix(name, ".")
	if strings.HasSuffix(name, s.domain) {
		return strings.TrimSuffix(name, s.domain), true
	}
	if !strings.Contains(short, ".") {
		return short, true
	}
	if _, ok := t.Lookup(short); ok {
		return short, true
	}
	return "", false
}

func (s *Server) answerLocal(t *Table, req *mdns.Msg, q mdns.Question, name string) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if name == strings.ToLower(ProbeName) && q.Qtype == mdns.TypeTXT {
		m.Answer = append(m.Answer, &mdns.TXT{Hdr: s.hdr(q.Name, mdns.TypeTXT), Txt: []string{s.cfg.ID}})
		return m
	}
	addrs, ok := t.Lookup(name)
	if !ok {
		m.Rcode = mdns.RcodeNameError
		return m
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY):
			m.Answer = append(m.Answer, &mdns.A{Hdr: s.hdr(q.Name, mdns.TypeA), A: a.AsSlice()})
		case a.Is6() && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY):
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: s.hdr(q.Name, mdns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return m // NOERROR without answers: the name exists, not with this type
}

// reverse returns the address of a reverse name in one of the subnets.
func (s *Server) reverse(t *Table, name string) (netip.Addr, bool) {
	a, ok := parseReverse(name)
	if !ok {
		return a, false
	}
	for _, p := range s.cfg.Subnets {
		if p.Contains(a) {
			return a, true
		}
	}
	return a, len(t.Names(a)) > 0
}

func (s *Server) answerPTR(t *Table, req *mdns.Msg, q mdns.Question, a netip.Addr) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	names := t.Names(a)
	if len(names) == 0 {
		m.Rcode = mdns.RcodeNameError
		return m
	}
	if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
		for _, n := range names {
			m.Answer = append(m.Answer, &mdns.PTR{Hdr: s.hdr(q.Name, mdns.TypePTR), Ptr: mdns.Fqdn(n) + strings.TrimPrefix(s.domain, ".")})
		}
	}
	return m
}

func (s *Server) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.cfg.TTL}
}

// forwardSync asks the upstream servers in turn for a TCP client, over UDP
// (and again over TCP when the answer is truncated), and returns the first
// answer; SERVFAIL when none answers within ForwardTimeout. UDP clients'
// queries go through the forwarder instead. A server that does not
// forward (Upstreams nil) never gets here: see noForward.
func (s *Server) forwardSync(req *mdns.Msg, network string) *mdns.Msg {
	ups := s.cfg.Upstreams()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ForwardTimeout)
	defer cancel()
	var errs []error
	for i, up := range ups {
		// Split what is left of the budget between the servers not yet tried.
		left := time.Until(deadline(ctx))
		per := left / time.Duration(len(ups)-i)
		resp, err := s.exchange(ctx, "udp", up, req, per)
		if err == nil && resp.Truncated && network == "tcp" {
			// The client can take a long answer: ask again over TCP.
			if full, terr := s.exchange(ctx, "tcp", up, req, time.Until(deadline(ctx))/time.Duration(len(ups)-i)); terr == nil {
				resp = full
			}
		}
		if err == nil {
			resp.Id = req.Id
			return resp
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(ups) > 0 {
		s.cfg.Logger.Debug("dns forward failed", "name", req.Question[0].Name, "err", errors.Join(errs...))
	}
	m := new(mdns.Msg)
	m.SetRcode(req, mdns.RcodeServerFailure)
	m.RecursionAvailable = true
	return m
}

func (s *Server) exchange(ctx context.Context, network string, up netip.AddrPort, req *mdns.Msg, timeout time.Duration) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := s.cfg.Dial(ctx, network, up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	cl := &mdns.Client{Net: network, UDPSize: mdns.DefaultMsgSize}
	resp, _, err := cl.ExchangeWithConnContext(ctx, req.Copy(), &mdns.Conn{Conn: c, UDPSize: mdns.DefaultMsgSize})
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", up, err)
	}
	return resp, nil
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// parseReverse turns "4.3.2.1.in-addr.arpa." (or an ip6.arpa name) into the
// address it names.
func parseReverse(name string) (netip.Addr, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa"):
		parts := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa"), ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, p := range parts {
			v, err := strconv.ParseUint(p, 10, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			b[3-i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	case strings.HasSuffix(name, ".ip6.arpa"):
		parts := strings.Split(strings.TrimSuffix(name, ".ip6.arpa"), ".")
		if len(parts) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, p := range parts {
			v, err := strconv.ParseUint(p, 16, 4)
			if err != nil || len(p) != 1 {
				return netip.Addr{}, false
			}
			n := 31 - i
			if n%2 == 0 {
				b[n/2] |= byte(v) << 4
			} else {
				b[n/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
