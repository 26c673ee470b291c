package sandnet

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// askDNS sends one query from inside ns and returns the answer, or an
// error when none came within a second.
func askDNS(ns *netns.NS, network string, server netip.Addr, name string, qtype uint16) (*mdns.Msg, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: time.Second}
		c, err = d.Dial(network, netip.AddrPortFrom(server, 53).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	cl := &mdns.Client{Net: network, Timeout: time.Second}
	r, _, err := cl.ExchangeWithConn(m, &mdns.Conn{Conn: c})
	return r, err
}

// TestDNSServesItsNetworkOnly (issue 16 items 1 and 2): with a LAN
// neighbour routed to the gateway addresses, an upstream resolver that logs
// what it is asked, and sandboxes on a normal, an --internal and an
// internal-with-forwarding network, on both firewall backends:
//   - the neighbour resolves nothing through any network's name server
//     (UDP, TCP, IPv6; names, PTR, outside names), and the upstream never
//     sees its queries;
//   - a sandbox of the internal network, with a default route added by
//     hand, gets no answer from the other network's server, and its own
//     server answers its names and NXDOMAIN for the rest without asking
//     upstream, unless the network asks for forwarding;
//   - each network's own sandboxes resolve as before.
func TestDNSServesItsNetworkOnly(t *testing.T) {
	for _, backend := range []string{"iptables", "nftables"} {
		t.Run(backend, func(t *testing.T) {
			if backend == "iptables" {
				testns.NeedProgram(t, "iptables backend", "iptables", "ip6tables")
			}
			testDNSServesItsNetworkOnly(t, backend)
		})
	}
}

func testDNSServesItsNetworkOnly(t *testing.T, backend string) {
	l := newDNSLab(t)
	h := l.hostFW(t, DNSInProcess, backend)
	n1 := Network{Name: "n1", Subnet: netip.MustParsePrefix("10.88.20.0/24"), Subnet6: netip.MustParsePrefix("fd00:88:20::/64")}
	in := Network{Name: "int", Subnet: netip.MustParsePrefix("10.88.21.0/24"), Internal: true}
	fwd := Network{Name: "intfwd", Subnet: netip.MustParsePrefix("10.88.22.0/24"), Internal: true, DNSForward: true}
	a, b, d := testns.New(t, "a"), testns.New(t, "b"), testns.New(t, "d")
	ctx := context.Background()
	for _, x := range []struct {
		sb   *netns.NS
		n    Network
		name string
	}{{a, n1, "alpha"}, {b, in, "bravo"}, {d, fwd, "delta"}} {
		ep := mustAttach(t, h, x.sb, x.n, AttachOptions{Hostname: x.name})
		t.Cleanup(func() { h.Detach(ctx, ep) })
	}
	gw1, gw16, gwIn, gwFwd := netip.MustParseAddr("10.88.20.1"), netip.MustParseAddr("fd00:88:20::1"), netip.MustParseAddr("10.88.21.1"), netip.MustParseAddr("10.88.22.1")

	// The LAN neighbour: one /32 (/128) route to each gateway via the host.
	lan := testns.New(t, "lan")
	testns.Run(t, l.hns, "ip", "link", "add", "h16-lan0", "type", "veth", "peer", "name", "eth0", "netns", lan.Name())
	testns.Run(t, l.hns, "ip", "addr", "add", "192.168.77.1/24", "dev", "h16-lan0")
	testns.Run(t, l.hns, "ip", "addr", "add", "fd00:77::1/64", "dev", "h16-lan0", "nodad")
	testns.Run(t, l.hns, "ip", "link", "set", "h16-lan0", "up")
	testns.Run(t, lan, "ip", "addr", "add", "192.168.77.2/24", "dev", "eth0")
	testns.Run(t, lan, "ip", "addr", "add", "fd00:77::2/64", "dev", "eth0", "nodad")
	testns.Run(t, lan, "ip", "link", "set", "eth0", "up")
	for _, gw := range []netip.Addr{gw1, gwIn, gwFwd} {
		testns.Run(t, lan, "ip", "route", "add", gw.String()+"/32", "via", "192.168.77.1")
	}
	testns.Run(t, lan, "ip", "-6", "route", "add", gw16.String()+"/128", "via", "fd00:77::1")
	if err := testns.Ping(lan, gw1.String()); err != nil {
		t.Fatalf("the neighbour does not reach the gateway at all (the test would prove nothing): %v", err)
	}

	// The network's own sandbox: names, and outside names forwarded.
	for _, network := range []string{"udp", "tcp"} {
		for _, server := range []netip.Addr{gw1, gw16} {
			if r, err := askDNS(a, network, server, "alpha", mdns.TypeA); err != nil || len(r.Answer) != 1 {
				t.Errorf("alpha from a over %s to %s: %v %v", network, server, r, err)
			}
		}
		if r, err := askDNS(a, network, gw1, "upstream.test", mdns.TypeA); err != nil || len(r.Answer) != 1 {
			t.Errorf("upstream.test from a over %s: %v %v", network, r, err)
		}
	}

	// The neighbour gets nothing from any server, and nothing it asks goes upstream.
	for _, network := range []string{"udp", "tcp"} {
		for _, q := range []struct {
			server netip.Addr
			name   string
			qtype  uint16
		}{
			{gw1, "leak-lan.test", mdns.TypeA}, {gw1, "alpha", mdns.TypeA}, {gw16, "leak-lan6.test", mdns.TypeAAAA},
			{gwIn, "bravo", mdns.TypeA}, {gwIn, "2.21.88.10.in-addr.arpa", mdns.TypePTR}, {gwFwd, "leak-lan-fwd.test", mdns.TypeA},
		} {
			if r, err := askDNS(lan, network, q.server, q.name, q.qtype); err == nil {
				t.Errorf("the LAN neighbour asked %s for %s over %s and got an answer: %v", q.server, q.name, network, r)
			}
		}
	}

	// The internal sandbox, with a default route of its own making.
	testns.Run(t, b, "ip", "route", "replace", "default", "via", gwIn.String())
	for _, network := range []string{"udp", "tcp"} {
		if r, err := askDNS(b, network, gw1, "leak-int.test", mdns.TypeA); err == nil {
			t.Errorf("the internal sandbox asked network n1's server over %s and got an answer: %v", network, r)
		}
		if r, err := askDNS(b, network, gw1, "alpha", mdns.TypeA); err == nil {
			t.Errorf("the internal sandbox resolved n1's alpha over %s: %v", network, r)
		}
		if r, err := askDNS(b, network, gwIn, "bravo", mdns.TypeA); err != nil || len(r.Answer) != 1 {
			t.Errorf("bravo from its own network's server over %s: %v %v", network, r, err)
		}
		if r, err := askDNS(b, network, gwIn, "leak-int2.test", mdns.TypeA); err != nil || r.Rcode != mdns.RcodeNameError {
			t.Errorf("an outside name from the internal network's server over %s: %v %v, want NXDOMAIN", network, r, err)
		}
	}
	// Forwarding asked for explicitly.
	if r, err := askDNS(d, "udp", gwFwd, "upstream.test", mdns.TypeA); err != nil || len(r.Answer) != 1 {
		t.Errorf("upstream.test on an internal network with DNSForward: %v %v", r, err)
	}
	for _, name := range []string{"leak-lan.test", "leak-lan6.test", "leak-lan-fwd.test", "leak-int.test", "leak-int2.test"} {
		if l.asked(name) {
			t.Errorf("the upstream was asked %s", name)
		}
	}
	if !l.asked("upstream.test") {
		t.Error("the upstream log saw nothing: the test's upstream does not work")
	}
}
