package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"

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
}

// Server is a running name server on one address (UDP and TCP).
type Server struct {
	cfg    Config
	addr   netip.AddrPort
	udp    *mdns.Server
	tcp    *mdns.Server
	domain string // lower-case, with leading and trailing dots: ".sandnet.internal."
	close  sync.Once
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
	ap := netip.AddrPortFrom(addr, uint16(port))
	var (
		pc net.PacketConn
		ln net.Listener
	)
	// IP_FREEBIND: an IPv6 gateway may still be tentative (DAD) when the
	// first sandbox attaches; the socket works as soon as the address does.
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, 15 /* IP_FREEBIND */, 1)
		})
		return errors.Join(err, serr)
	}}
	err := ns.Do(func() error {
		var err error
		if pc, err = lc.ListenPacket(context.Background(), "udp", ap.String()); err != nil {
			return err
		}
		if ln, err = lc.Listen(context.Background(), "tcp", ap.String()); err != nil {
			pc.Close()
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
	policy := &clientPolicy{ns: ns, clients: cfg.Clients, iface: cfg.Interface}
	fpc, err := newFilteredPacketConn(pc, policy)
	if err != nil {
		pc.Close()
		ln.Close()
		return nil, fmt.Errorf("listening for DNS on %s in %s: %w", ap, ns, err)
	}
	s := &Server{cfg: cfg, addr: ap, domain: "." + strings.ToLower(strings.Trim(cfg.Domain, ".")) + "."}
	s.udp = &mdns.Server{PacketConn: fpc, Handler: s}
	s.tcp = &mdns.Server{Listener: &filteredListener{Listener: ln, p: policy}, Handler: s, ReadTimeout: 5 * time.Second}
	var started sync.WaitGroup
	for _, srv := range []*mdns.Server{s.udp, s.tcp} {
		started.Add(1)
		srv.NotifyStartedFunc = started.Done
		go srv.ActivateAndServe()
	}
	started.Wait()
	return s, nil
}

// Addr is the address and port served.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Close stops serving and closes the sockets; idempotent.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
	})
	return err
}

// ServeDNS answers one query: a sandbox name from Names, NXDOMAIN for an
// unknown name of the network (a single label, or under Domain, or a reverse
// name in Subnets), else the upstream servers' answer.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	resp := s.answer(w, req)
	if resp == nil {
		return
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := mdns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

func (s *Server) answer(w mdns.ResponseWriter, req *mdns.Msg) *mdns.Msg {
	if req.Opcode != mdns.OpcodeQuery || len(req.Question) != 1 {
		m := new(mdns.Msg)
		return m.SetRcode(req, mdns.RcodeNotImplemented)
	}
	q := req.Question[0]
	name := strings.ToLower(mdns.Fqdn(q.Name))
	local, ok := s.local(name)
	if ok {
		return s.answerLocal(req, q, local)
	}
	if ptr, ok := s.reverse(name); ok {
		return s.answerPTR(req, q, ptr)
	}
	return s.forward(w, req)
}

// local returns the sandbox name a query name is about, if it is one of the
// network's: a single label, a name in the table, or a name under Domain.
func (s *Server) local(name string) (string, bool) {
	short := strings.TrimSuffix(name, ".")
	if strings.HasSuffix(name, s.domain) {
		return strings.TrimSuffix(name, s.domain), true
	}
	if !strings.Contains(short, ".") {
		return short, true
	}
	if _, ok := s.cfg.Names.Table().Lookup(short); ok {
		return short, true
	}
	return "", false
}

func (s *Server) answerLocal(req *mdns.Msg, q mdns.Question, name string) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if name == strings.ToLower(ProbeName) && q.Qtype == mdns.TypeTXT {
		m.Answer = append(m.Answer, &mdns.TXT{Hdr: s.hdr(q.Name, mdns.TypeTXT), Txt: []string{s.cfg.ID}})
		return m
	}
	addrs, ok := s.cfg.Names.Table().Lookup(name)
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
func (s *Server) reverse(name string) (netip.Addr, bool) {
	a, ok := parseReverse(name)
	if !ok {
		return a, false
	}
	for _, p := range s.cfg.Subnets {
		if p.Contains(a) {
			return a, true
		}
	}
	return a, len(s.cfg.Names.Table().Names(a)) > 0
}

func (s *Server) answerPTR(req *mdns.Msg, q mdns.Question, a netip.Addr) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	names := s.cfg.Names.Table().Names(a)
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

// forward answers NXDOMAIN when the server does not forward (Upstreams
// nil); else it asks the upstream servers in turn, over UDP (and again
// over TCP when the answer is truncated and the client came over TCP), and
// returns the first answer; SERVFAIL when none answers within
// ForwardTimeout.
func (s *Server) forward(w mdns.ResponseWriter, req *mdns.Msg) *mdns.Msg {
	if s.cfg.Upstreams == nil {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeNameError)
		return m
	}
	ups := s.cfg.Upstreams()
	network := "udp"
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		network = "tcp"
	}
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
