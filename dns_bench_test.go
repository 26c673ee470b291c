package sandnet

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/internal/testns"
)

// BenchmarkDNSServer100Names measures the queries per second the embedded
// name server answers for a network of 100 sandboxes, as configured in
// production: names followed in the state dir (one ioctl per batch of
// queries to notice changes), UDP, parallel clients in the same namespace.
func BenchmarkDNSServer100Names(b *testing.B) {
	hns := testns.New(b, "host")
	h, err := NewHostNS(hns, HostConfig{StateDir: b.TempDir() + "/state"})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	testns.Run(b, h.ns, "ip", "link", "set", "lo", "up")
	if err := statefile.MkdirAll(h.endpointDir("bench")); err != nil {
		b.Fatal(err)
	}
	var srv *dns.Server
	for i := range 100 {
		ep := Endpoint{ID: fmt.Sprintf("ep%03d", i), Network: "bench", SandboxID: fmt.Sprintf("sbx%d", i), Hostname: fmt.Sprintf("host%d", i),
			Addresses: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, 0, byte(2 + i)}), 24)}}
		if err := statefile.WriteJSON(h.endpointPath("bench", ep.ID), endpointRecord{Version: stateVersion, State: stateAttached, Endpoint: ep}); err != nil {
			b.Fatal(err)
		}
	}
	names, err := recordSource{h.st}.Names("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer names.(io.Closer).Close()
	srv, err = dns.Listen(h.ns, netip.MustParseAddr("127.0.0.1"), 53, dns.Config{Names: names})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var n atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c, err := nsDial(h.ns)(context.Background(), "udp", srv.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		co := &mdns.Conn{Conn: c}
		m := new(mdns.Msg)
		i := int(n.Add(1000))
		for pb.Next() {
			m.SetQuestion(fmt.Sprintf("host%d.", i%100), mdns.TypeA)
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
