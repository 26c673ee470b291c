package diag

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// lab is a private host namespace with one bridge network, one sandbox
// attached to it, IP forwarding on, and a DNS server on the bridge (at
// dnsAddr) that the sandbox's resolv.conf names: everything Check wants.
type lab struct {
	host    *sandnet.Host
	hns     *netns.NS
	sb      *netns.NS
	ep      *sandnet.Endpoint
	dnsAddr netip.Addr
}

var (
	labSubnet = netip.MustParsePrefix("10.77.0.0/24")
	labGW     = netip.MustParseAddr("10.77.0.1")
	labDNS    = netip.MustParseAddr("10.77.0.254")
)

func newLab(t *testing.T) *lab {
	t.Helper()
	ctx := context.Background()
	hns := testns.New(t, "host")
	// The forward-rules check reads iptables-save: where iptables is
	// installed the lab uses the iptables backend, whose rules some tests
	// flush and break by hand (they skip without it); elsewhere the default.
	backend := ""
	if testns.HasCommand("iptables") {
		backend = "iptables"
	}
	// The name server runs in this process, so it has stopped when the
	// Host is closed, before the state dir is removed.
	h, err := sandnet.NewHostNS(hns, sandnet.HostConfig{StateDir: filepath.Join(t.TempDir(), "state"), FirewallBackend: backend, DNS: sandnet.DNSInProcess})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	sb := testns.New(t, "sb")
	ep, err := h.AttachNS(ctx, sb, sandnet.Network{Name: "n1", Subnet: labSubnet}, sandnet.AttachOptions{Hostname: "web"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Detach(context.Background(), ep); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	// What the NAT work will do for a non-internal network; here by hand.
	if _, err := hns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	testns.Run(t, hns, "ip", "addr", "add", labDNS.String()+"/24", "dev", ep.Bridge)
	startDNS(t, hns, labDNS, map[string]netip.Addr{"web.": ep.Addr(false)})
	writeResolvConf(t, sb, "nameserver "+labDNS.String()+"\nsearch lab.test\n")
	return &lab{host: h, hns: hns, sb: sb, ep: ep, dnsAddr: labDNS}
}

// writeResolvConf writes /etc/netns/NAME/resolv.conf for sb and removes the
// directory when the test ends.
func writeResolvConf(t *testing.T, sb *netns.NS, content string) {
	t.Helper()
	dir := filepath.Join(EtcNetns, sb.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startDNS serves names (A records) on addr:53 inside ns; other names are
// NXDOMAIN, and "." NS gets an empty NOERROR answer.
func startDNS(t *testing.T, ns *netns.NS, addr netip.Addr, names map[string]netip.Addr) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(addr, 53).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		qq := q.Question[0]
		if a, ok := names[strings.ToLower(qq.Name)]; ok && qq.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: a.AsSlice()})
		} else if qq.Name != "." {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
}

func (l *lab) check(t *testing.T, opts CheckOptions) []Result {
	t.Helper()
	if opts.Host == nil {
		opts.Host = l.host
	}
	rs := Check(context.Background(), l.sb, opts)
	for _, r := range rs {
		t.Log(r)
	}
	return rs
}

// expectOnly asserts that check name failed with a reason holding every
// want, and that every other check passed or was skipped because of it
// (nat-rules is skipped without a firewall checker).
func expectOnly(t *testing.T, rs []Result, name string, want ...string) {
	t.Helper()
	r, ok := Find(rs, name)
	if !ok {
		t.Fatalf("no result for %s", name)
	}
	if r.Status != Fail {
		t.Errorf("%s = %s (%s), want fail", name, r.Status, r.Reason)
	}
	for _, w := range want {
		if !strings.Contains(r.Reason, w) {
			t.Errorf("%s reason %q does not say %q", name, r.Reason, w)
		}
	}
	for _, o := range rs {
		switch {
		case o.Name == name:
		case o.Status == Pass:
		case o.Status == Skip && o.BlockedBy != "":
		case o.Status == Skip && o.Name == CheckNATRules && o.Reason == "no firewall checker":
		case noIptablesSave(o):
		default:
			t.Errorf("%s = %s (%s), want pass, or skip because %s failed", o.Name, o.Status, o.Reason, name)
		}
	}
}

func expectAllPass(t *testing.T, rs []Result) {
	t.Helper()
	if len(rs) != len(checks) {
		t.Errorf("%d results, want %d", len(rs), len(checks))
	}
	for _, r := range rs {
		if r.Status != Pass && !(r.Name == CheckNATRules && r.Reason == "no firewall checker") && !noIptablesSave(r) {
			t.Errorf("%s = %s (%s), want pass", r.Name, r.Status, r.Reason)
		}
	}
}

// noIptablesSave reports whether r is the forward-rules check skipped on a
// machine without iptables (it reads the FORWARD chain with iptables-save).
func noIptablesSave(r Result) bool {
	return r.Name == CheckFirewall && r.Status == Skip && !testns.HasCommand("iptables-save")
}

func blockedBy(t *testing.T, rs []Result, name, dep string) {
	t.Helper()
	if r, _ := Find(rs, name); r.Status != Skip || r.BlockedBy != dep {
		t.Errorf("%s = %s (%s), want skipped for %s", name, r.Status, r.Reason, dep)
	}
}
