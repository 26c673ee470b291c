package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// labNS is a private namespace with lo up and a few more loopback addresses.
func labNS(t testing.TB) *netns.NS {
	ns := testns.New(t, "dns")
	testns.Run(t, ns, "ip", "link", "set", "lo", "up")
	return ns
}

func nsDial(ns *netns.NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = ns.Do(func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

func query(t testing.TB, ns *netns.NS, network string, server netip.AddrPort, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	c, err := nsDial(ns)(context.Background(), network, server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	cl := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := cl.ExchangeWithConn(m, &mdns.Conn{Conn: c})
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

// fakeUpstream answers upstream.test with 192.0.2.7 and never answers silent.test.
func fakeUpstream(t testing.TB, ns *netns.NS, addr string) {
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		if r.Question[0].Name == "silent.test." {
			return
		}
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 7)})
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
}

func TestServer(t *testing.T) {
	ns := labNS(t)
	fakeUpstream(t, ns, "127.0.0.2:53")
	tb := NewTable([]Record{{Names: []string{"web", "www"}, Addrs: addrs("10.88.0.2", "fd00::2")}})
	srv, err := Listen(ns, netip.MustParseAddr("127.0.0.1"), 53, Config{
		Names:     Static{tb},
		Subnets:   []netip.Prefix{netip.MustParsePrefix("10.88.0.0/24")},
		Upstreams: func() []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:53")} },
		Dial:      nsDial(ns),
		ID:        "test-id",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	at := srv.Addr()

	for _, network := range []string{"udp", "tcp"} {
		for _, name := range []string{"web", "WWW.", "web.sandnet.internal"} {
			r := query(t, ns, network, at, name, mdns.TypeA)
			if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.88.0.2" {
				t.Errorf("%s %s A: %v", network, name, r)
			}
		}
	}
	if r := query(t, ns, "udp", at, "web", mdns.TypeAAAA); len(r.Answer) != 1 || r.Answer[0].(*mdns.AAAA).AAAA.String() != "fd00::2" {
		t.Errorf("AAAA: %v", r)
	}
	if r := query(t, ns, "udp", at, "nosuch", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("nosuch: %v", r)
	}
	if r := query(t, ns, "udp", at, "nosuch.sandnet.internal", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("nosuch.sandnet.internal: %v", r)
	}
	if r := query(t, ns, "udp", at, "2.0.88.10.in-addr.arpa", mdns.TypePTR); len(r.Answer) != 2 || r.Answer[0].(*mdns.PTR).Ptr != "web.sandnet.internal." {
		t.Errorf("PTR: %v", r)
	}
	if r := query(t, ns, "udp", at, "9.0.88.10.in-addr.arpa", mdns.TypePTR); r.Rcode != mdns.RcodeNameError {
		t.Errorf("PTR unknown: %v", r)
	}
	if r := query(t, ns, "udp", at, "upstream.test", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "192.0.2.7" {
		t.Errorf("forwarded: %v", r)
	}
	if r := query(t, ns, "tcp", at, "upstream.test", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("forwarded over tcp: %v", r)
	}
	if r := query(t, ns, "udp", at, "silent.test", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("silent upstream: %v", r)
	}
	id, err := Probe(context.Background(), nsDial(ns), at, "", time.Second)
	if err != nil || id != "test-id" {
		t.Errorf("probe: %q %v", id, err)
	}

	// The port is taken now: a second server fails cleanly, leaving nothing bound.
	if _, err := Listen(ns, netip.MustParseAddr("127.0.0.1"), 53, Config{Names: Static{tb}}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen: %v, want ErrInUse", err)
	}
	// UDP free but TCP taken: no half-started server (the UDP socket is closed again).
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.3:53"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Listen(ns, netip.MustParseAddr("127.0.0.3"), 53, Config{Names: Static{tb}}); !errors.Is(err, ErrInUse) {
		t.Fatalf("tcp taken: %v", err)
	}
	if err := ns.Do(func() error {
		pc, err := net.ListenPacket("udp", "127.0.0.3:53")
		if err == nil {
			pc.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("udp socket left bound after a failed Listen: %v", err)
	}
	srv.Close()
	srv.Close()
}

// BenchmarkServer100Names measures the queries per second the server answers
// for a network of 100 sandboxes, over UDP, from parallel clients.
func BenchmarkServer100Names(b *testing.B) {
	ns := labNS(b)
	var recs []Record
	for i := range 100 {
		recs = append(recs, Record{Names: []string{fmt.Sprintf("sbx%d", i), fmt.Sprintf("alias%d", i)}, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 88, byte(i / 250), byte(2 + i%250)})}})
	}
	srv, err := Listen(ns, netip.MustParseAddr("127.0.0.1"), 53, Config{Names: Static{NewTable(recs)}})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	benchQueries(b, ns, srv.Addr())
}

func benchQueries(b *testing.B, ns *netns.NS, at netip.AddrPort) {
	var n atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c, err := nsDial(ns)(context.Background(), "udp", at.String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		co := &mdns.Conn{Conn: c}
		m := new(mdns.Msg)
		i := int(n.Add(1000))
		for pb.Next() {
			m.SetQuestion(fmt.Sprintf("sbx%d.", i%100), mdns.TypeA)
			i++
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if err := co.WriteMsg(m); err != nil {
				b.Error(err)
				return
			}
			r, err := co.ReadMsg()
			if err != nil || len(r.Answer) != 1 {
				b.Errorf("answer %v %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
}

// TestBindThenServe: queries that come between Bind and Serve wait in the
// sockets and are answered once served, over UDP and TCP; nothing is refused.
func TestBindThenServe(t *testing.T) {
	ns := labNS(t)
	so, err := Bind(ns, netip.MustParseAddr("127.0.0.1"), 53)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		r   *mdns.Msg
		err error
	}
	got := make(chan answer, 2)
	for _, network := range []string{"udp", "tcp"} {
		c, err := nsDial(ns)(context.Background(), network, "127.0.0.1:53")
		if err != nil {
			t.Fatalf("%s before Serve: %v", network, err)
		}
		defer c.Close()
		m := new(mdns.Msg)
		m.SetQuestion("web.", mdns.TypeA)
		co := &mdns.Conn{Conn: c}
		if err := co.WriteMsg(m); err != nil {
			t.Fatalf("%s before Serve: %v", network, err)
		}
		go func() {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r, err := co.ReadMsg()
			got <- answer{r, err}
		}()
	}
	// Serve a network elsewhere, as the runner does: the host's own queries
	// (over loopback) are served, also those that came before Serve.
	srv, err := Serve(so, Config{Names: Static{NewTable([]Record{{Names: []string{"web"}, Addrs: addrs("10.88.0.2")}})},
		Clients: []netip.Prefix{netip.MustParsePrefix("10.88.0.0/24")}, Interface: "br-nosuch"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for range 2 {
		a := <-got
		if a.err != nil || len(a.r.Answer) != 1 {
			t.Fatalf("a query sent before Serve: %v %v", a.r, a.err)
		}
	}
}

// TestServerOwnThread checks the helper's way of serving (Config.OwnThread):
// the same answers, a garbage collection (which must stop the reader while
// it waits in the kernel) does not hang it, GOMAXPROCS is raised while it
// runs and put back by Close, and Close returns.
func TestServerOwnThread(t *testing.T) {
	ns := labNS(t)
	tb := NewTable([]Record{{Names: []string{"web"}, Addrs: addrs("10.88.0.2")}})
	procs := runtime.GOMAXPROCS(0)
	srv, err := Listen(ns, netip.MustParseAddr("127.0.0.1"), 53, Config{Names: Static{tb}, OwnThread: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if got := runtime.GOMAXPROCS(0); got != procs+1 {
		t.Errorf("GOMAXPROCS while serving: %d, want %d", got, procs+1)
	}
	c, err := nsDial(ns)(context.Background(), "udp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	co := &mdns.Conn{Conn: c}
	for i := range 2000 {
		m := new(mdns.Msg)
		m.SetQuestion("web.", mdns.TypeA)
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.88.0.2" {
			t.Fatalf("query %d: %v", i, r)
		}
		if i%100 == 0 {
			runtime.GC() // stops the world: the reader must let it
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS after Close: %d, want %d", got, procs)
	}
}
