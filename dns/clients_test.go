package dns

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// ask sends one query from ns, from address src if valid, and returns the
// answer or the error (no answer within a second).
func ask(ns *netns.NS, network string, src netip.Addr, server netip.AddrPort, name string) (*mdns.Msg, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: time.Second}
		if src.IsValid() {
			if network == "udp" {
				d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
			} else {
				d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
			}
		}
		c, err = d.Dial(network, server.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	cl := &mdns.Client{Net: network, Timeout: time.Second}
	r, _, err := cl.ExchangeWithConn(m, &mdns.Conn{Conn: c})
	return r, err
}

// TestServerAnswersItsNetworkOnly: a LAN neighbour routed to the gateway
// address, the same neighbour with a source address of the network's
// subnet, and a sandbox of another bridge get no answer (UDP or TCP, IPv4
// and IPv6); the network's sandbox and the host itself do.
func TestServerAnswersItsNetworkOnly(t *testing.T) {
	host := labNS(t)
	sb, other, lan := testns.New(t, "sb"), testns.New(t, "other"), testns.New(t, "lan")
	for _, br := range []string{"br0", "br1"} {
		testns.Run(t, host, "ip", "link", "add", br, "type", "bridge")
		testns.Run(t, host, "ip", "link", "set", br, "up")
	}
	testns.Run(t, host, "ip", "addr", "add", "10.88.0.1/24", "dev", "br0")
	testns.Run(t, host, "ip", "addr", "add", "fd00:88::1/64", "dev", "br0", "nodad")
	testns.Run(t, host, "ip", "addr", "add", "10.88.1.1/24", "dev", "br1")
	plug := func(s *netns.NS, hostIf, master string, addrs ...string) {
		testns.Run(t, host, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", s.Name())
		if master != "" {
			testns.Run(t, host, "ip", "link", "set", hostIf, "master", master)
		}
		testns.Run(t, host, "ip", "link", "set", hostIf, "up")
		for _, a := range addrs {
			testns.Run(t, s, "ip", "addr", "add", a, "dev", "eth0", "nodad")
		}
		testns.Run(t, s, "ip", "link", "set", "eth0", "up")
		testns.Run(t, s, "ip", "link", "set", "lo", "up")
	}
	plug(sb, "v-sb", "br0", "10.88.0.2/24", "fd00:88::2/64")
	plug(other, "v-other", "br1", "10.88.1.2/24")
	testns.Run(t, other, "ip", "route", "add", "default", "via", "10.88.1.1")
	plug(lan, "lan0", "", "192.168.50.2/24", "fd00:50::2/64", "10.88.0.99/32", "fd00:88::99/128")
	testns.Run(t, host, "ip", "addr", "add", "192.168.50.1/24", "dev", "lan0")
	testns.Run(t, host, "ip", "addr", "add", "fd00:50::1/64", "dev", "lan0", "nodad")
	testns.Run(t, lan, "ip", "route", "add", "10.88.0.1/32", "via", "192.168.50.1")
	testns.Run(t, lan, "ip", "-6", "route", "add", "fd00:88::1/128", "via", "fd00:50::1")

	tb := NewTable([]Record{{Names: []string{"web"}, Addrs: addrs("10.88.0.2")}})
	subnets := []netip.Prefix{netip.MustParsePrefix("10.88.0.0/24"), netip.MustParsePrefix("fd00:88::/64")}
	var servers []netip.AddrPort
	for _, gw := range []string{"10.88.0.1", "fd00:88::1"} {
		srv, err := Listen(host, netip.MustParseAddr(gw), 53, Config{Names: Static{tb}, Subnets: subnets, Clients: subnets, Interface: "br0", ID: "id"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		servers = append(servers, srv.Addr())
	}
	for _, at := range servers {
		v4 := at.Addr().Is4()
		pick := func(a4, a6 string) netip.Addr {
			if v4 {
				return netip.MustParseAddr(a4)
			}
			return netip.MustParseAddr(a6)
		}
		for _, network := range []string{"udp", "tcp"} {
			if r, err := ask(sb, network, netip.Addr{}, at, "web"); err != nil || len(r.Answer) != 1 {
				t.Errorf("%s %s from the network's sandbox: %v %v", network, at, r, err)
			}
			if id, err := Probe(context.Background(), nsDial(host), at, "", time.Second); err != nil || id != "id" {
				t.Errorf("probe of %s from the host: %q %v", at, id, err)
			}
			for _, c := range []struct {
				who string
				ns  *netns.NS
				src netip.Addr
			}{
				{"a LAN neighbour", lan, pick("192.168.50.2", "fd00:50::2")},
				{"a LAN neighbour with a source in the subnet", lan, pick("10.88.0.99", "fd00:88::99")},
			} {
				if r, err := ask(c.ns, network, c.src, at, "web"); err == nil {
					t.Errorf("%s %s: %s got an answer: %v", network, at, c.who, r)
				}
			}
			if v4 {
				if r, err := ask(other, network, netip.Addr{}, at, "web"); err == nil {
					t.Errorf("%s %s: a sandbox of another bridge got an answer: %v", network, at, r)
				}
			}
		}
	}
}

// TestServerWithoutUpstreamsDoesNotForward: a server that does not forward
// (an internal network's) answers its own names and NXDOMAIN for the rest,
// and sends nothing upstream; one that forwards but knows no server says
// SERVFAIL.
func TestServerWithoutUpstreamsDoesNotForward(t *testing.T) {
	ns := labNS(t)
	tb := NewTable([]Record{{Names: []string{"web"}, Addrs: addrs("10.88.0.2")}})
	var dialed atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed.Add(1)
		return nsDial(ns)(ctx, network, addr)
	}
	own, err := Listen(ns, netip.MustParseAddr("127.0.0.1"), 53, Config{Names: Static{tb}, Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	empty, err := Listen(ns, netip.MustParseAddr("127.0.0.2"), 53, Config{Names: Static{tb}, Dial: dial, Upstreams: func() []netip.AddrPort { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { empty.Close() })
	if r := query(t, ns, "udp", own.Addr(), "web", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("own name: %v", r)
	}
	for _, name := range []string{"upstream.test", "example.com", "1.2.0.192.in-addr.arpa"} {
		if r := query(t, ns, "udp", own.Addr(), name, mdns.TypeA); r.Rcode != mdns.RcodeNameError {
			t.Errorf("%s from a server that does not forward: %s, want NXDOMAIN", name, mdns.RcodeToString[r.Rcode])
		}
	}
	if r := query(t, ns, "udp", empty.Addr(), "upstream.test", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("no upstream known: %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
	if n := dialed.Load(); n != 0 {
		t.Errorf("%d upstream connections", n)
	}
}
