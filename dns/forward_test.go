package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// upstreamFunc serves UDP on addr inside ns with handler h (nil: read and
// never answer).
func upstreamFunc(t testing.TB, ns interface{ Do(func() error) error }, addr string, h func(pc net.PacketConn, from net.Addr, req *mdns.Msg)) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := new(mdns.Msg)
			if req.Unpack(buf[:n]) == nil && h != nil {
				h(pc, from, req)
			}
		}
	}()
}

// TestForwardFailover: the first upstream never answers, the second does;
// the client gets the second's answer, with its own ID. The second's socket
// is made by the sweep while the UDP loop waits on the first's: the loop
// must be woken to wait on it too (the answer would come after the
// deadline otherwise).
func TestForwardFailover(t *testing.T) {
	ns := labNS(t)
	upstreamFunc(t, ns, "127.0.0.2:53", nil)
	fakeUpstream(t, ns, "127.0.0.3:53")
	srv, err := Listen(ns, netip.MustParseAddr("127.0.0.1"), 53, Config{
		Names: Static{NewTable(nil)},
		Upstreams: func() []netip.AddrPort {
			return []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:53"), netip.MustParseAddrPort("127.0.0.3:53")}
		},
		Dial:           nsDial(ns),
		ForwardTimeout: 400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for range 3 {
		r := query(t, ns, "udp", srv.Addr(), "upstream.test", mdns.TypeA)
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "192.0.2.7" {
			t.Fatalf("failover: %v", r)
		}
	}
}

// TestForwardRejectsForgedAnswers: an upstream that answers another
// question, or with another ID, is not believed: the client gets SERVFAIL,
// never the forged answer.
func TestForwardRejectsForgedAnswers(t *testing.T) {
	ns := labNS(t)
	upstreamFunc(t, ns, "127.0.0.2:53", func(pc net.PacketConn, from net.Addr, req *mdns.Msg) {
		for _, forged := range []func(m *mdns.Msg){
			func(m *mdns.Msg) { m.Question[0].Name = "evil.test." },
			func(m *mdns.Msg) { m.Id++ },
			func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeAAAA },
		} {
			m := new(mdns.Msg)
			m.SetReply(req)
			forged(m)
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: req.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(203, 0, 113, 66)})
			b, _ := m.Pack()
			pc.WriteTo(b, from)
		}
	})
	srv, err := Listen(ns, netip.MustParseAddr("127.0.0.1"), 53, Config{
		Names:          Static{NewTable(nil)},
		Upstreams:      func() []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:53")} },
		Dial:           nsDial(ns),
		ForwardTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r := query(t, ns, "udp", srv.Addr(), "upstream.test", mdns.TypeA)
	if r.Rcode != mdns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Fatalf("forged answers: %v", r)
	}
}

// TestForwardInternal: a server that does not forward (Upstreams nil, an
// internal network's) answers NXDOMAIN at once; one that would forward but
// knows no upstream (an empty list) answers SERVFAIL at once.
func TestForwardInternal(t *testing.T) {
	ns := labNS(t)
	for _, tc := range []struct {
		addr  string
		ups   func() []netip.AddrPort
		rcode int
	}{
		{"127.0.0.1", nil, mdns.RcodeNameError},
		{"127.0.0.2", func() []netip.AddrPort { return nil }, mdns.RcodeServerFailure},
	} {
		srv, err := Listen(ns, netip.MustParseAddr(tc.addr), 53, Config{Names: Static{NewTable(nil)}, Upstreams: tc.ups})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		for _, network := range []string{"udp", "tcp"} {
			if r := query(t, ns, network, srv.Addr(), "example.test", mdns.TypeA); r.Rcode != tc.rcode {
				t.Errorf("%s %s: %v, want %s", tc.addr, network, r, mdns.RcodeToString[tc.rcode])
			}
		}
	}
}

// TestForwardManyInFlight: queries from two clients, many in flight at
// once, all forwarded, through a server on its own thread (the helper's
// way), with the world stopped for the collector between rounds while the
// loop waits on the upstream sockets too (a query upstream never answers
// stays out all along): every client gets one answer per query, under its
// own ID, to its own question, and the server closes cleanly with none
// out.
func TestForwardManyInFlight(t *testing.T) {
	ns := labNS(t)
	fakeUpstream(t, ns, "127.0.0.2:53")
	srv, err := Listen(ns, netip.MustParseAddr("127.0.0.1"), 53, Config{
		Names:          Static{NewTable(nil)},
		Upstreams:      func() []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:53")} },
		Dial:           nsDial(ns),
		OwnThread:      true,
		ForwardTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	const inFlight = 100
	var clients []*mdns.Conn
	for range 2 {
		c, err := nsDial(ns)(context.Background(), "udp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, &mdns.Conn{Conn: c})
	}
	silent := new(mdns.Msg)
	silent.SetQuestion("silent.test.", mdns.TypeA)
	if err := clients[0].WriteMsg(silent); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		want := map[uint16]string{}
		for i := range inFlight {
			m := new(mdns.Msg)
			m.SetQuestion(fmt.Sprintf("q%d-%d.upstream.test.", round, i), mdns.TypeA)
			m.Id = uint16(round*inFlight + i)
			want[m.Id] = m.Question[0].Name
			if err := clients[i%2].WriteMsg(m); err != nil {
				t.Fatal(err)
			}
		}
		for i := range inFlight {
			co := clients[i%2]
			co.SetReadDeadline(time.Now().Add(5 * time.Second))
			r, err := co.ReadMsg()
			if err != nil {
				t.Fatalf("round %d: %d answers of %d: %v", round, i, inFlight, err)
			}
			name, ok := want[r.Id]
			if !ok || len(r.Question) != 1 || r.Question[0].Name != name || len(r.Answer) != 1 {
				t.Fatalf("round %d: answer %v: not one asked (or twice)", round, r)
			}
			delete(want, r.Id)
		}
		runtime.GC() // stops the world: the loop, waiting, must let it
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if n := srv.fwd.out.Load(); n != 0 {
		t.Errorf("%d queries still counted out after Close", n)
	}
}
