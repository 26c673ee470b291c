package sandnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// dnsLab is a private host namespace joined by a veth to an "upstream"
// namespace that plays the outside world's DNS server (10.250.0.2: it
// answers upstream.test with 192.0.2.7, never answers silent.test, and
// answers NXDOMAIN to anything else), and
// host resolv.conf files (temp files) that point at it through a
// systemd-resolved style stub, so the stub replacement is exercised too.
type dnsLab struct {
	hns, up      *netns.NS
	resolv, resd string
	dir          string

	mu   sync.Mutex
	seen []string // the names the upstream was asked, in order
}

// asked reports whether the upstream server was asked name.
func (l *dnsLab) asked(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.seen, mdns.Fqdn(name))
}

func newDNSLab(t *testing.T) *dnsLab {
	t.Helper()
	l := &dnsLab{hns: testns.New(t, "host"), up: testns.New(t, "up")}
	testns.Run(t, l.hns, "ip", "link", "add", "snt-up0", "type", "veth", "peer", "name", "eth0", "netns", l.up.Name())
	testns.Run(t, l.hns, "ip", "addr", "add", "10.250.0.1/24", "dev", "snt-up0")
	testns.Run(t, l.hns, "ip", "link", "set", "snt-up0", "up")
	testns.Run(t, l.up, "ip", "addr", "add", "10.250.0.2/24", "dev", "eth0")
	testns.Run(t, l.up, "ip", "link", "set", "eth0", "up")
	testns.Run(t, l.up, "ip", "link", "set", "lo", "up")
	var pc net.PacketConn
	if err := l.up.Do(func() (err error) { pc, err = net.ListenPacket("udp", "10.250.0.2:53"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		l.mu.Lock()
		l.seen = append(l.seen, strings.ToLower(r.Question[0].Name))
		l.mu.Unlock()
		if r.Question[0].Name == "silent.test." {
			return
		}
		m := new(mdns.Msg)
		m.SetReply(r)
		if r.Question[0].Name != "upstream.test." {
			m.Rcode = mdns.RcodeNameError
		} else if r.Question[0].Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 7)})
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })

	tmp := t.TempDir()
	l.dir = filepath.Join(tmp, "state")
	l.resolv = filepath.Join(tmp, "resolv.conf")
	l.resd = filepath.Join(tmp, "resolved.conf")
	os.WriteFile(l.resolv, []byte("nameserver 127.0.0.53\nsearch lab.test\noptions edns0\n"), 0o644)
	os.WriteFile(l.resd, []byte("nameserver 10.250.0.2\nsearch lab.test\n"), 0o644)
	return l
}

func (l *dnsLab) host(t *testing.T, mode DNSMode) *Host {
	t.Helper()
	return l.hostFW(t, mode, "")
}

// hostFW is host with a given firewall backend.
func (l *dnsLab) hostFW(t *testing.T, mode DNSMode, backend string) *Host {
	t.Helper()
	return openTestHost(t, l.hns, HostConfig{StateDir: l.dir, DNS: mode, ResolvConf: l.resolv, ResolvedConf: l.resd, FirewallBackend: backend})
}

// dig asks the first server of the sandbox's resolv.conf
// (/etc/netns/NAME/resolv.conf, what `ip netns exec NAME dig` reads) for
// one name, from a socket inside the sandbox: this process, no dig program.
// args are dig's: NAME (type A), -xADDR (PTR), +short (answers only). The
// result reads like dig's output ("status: NXDOMAIN", or with +short one
// answer per line).
func dig(t *testing.T, sb *netns.NS, args ...string) string {
	t.Helper()
	short, name, qtype := false, "", mdns.TypeA
	for _, a := range args {
		switch {
		case a == "+short":
			short = true
		case strings.HasPrefix(a, "-x"):
			rev, err := mdns.ReverseAddr(strings.TrimPrefix(a, "-x"))
			if err != nil {
				t.Fatal(err)
			}
			name, qtype = rev, mdns.TypePTR
		default:
			name = a
		}
	}
	rc, err := dns.ReadResolvConf(filepath.Join(dns.NetnsDir, sb.Name(), "resolv.conf"))
	if err != nil || len(rc.Nameservers) == 0 {
		return fmt.Sprintf("no servers in %s's resolv.conf: %v", sb, err)
	}
	var conn net.Conn
	if err := sb.Do(func() (err error) {
		conn, err = net.Dial("udp", netip.AddrPortFrom(rc.Nameservers[0], 53).String())
		return err
	}); err != nil {
		return err.Error()
	}
	defer conn.Close()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Timeout: 4 * time.Second}
	r, _, err := c.ExchangeWithConn(m, &mdns.Conn{Conn: conn})
	if err != nil {
		return err.Error()
	}
	if !short {
		return fmt.Sprintf("status: %s,\n%v", mdns.RcodeToString[r.Rcode], r)
	}
	var b strings.Builder
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			fmt.Fprintln(&b, rr.A)
		case *mdns.AAAA:
			fmt.Fprintln(&b, rr.AAAA)
		case *mdns.PTR:
			fmt.Fprintln(&b, rr.Ptr)
		}
	}
	return b.String()
}

func digStatus(out string) string {
	if _, rest, ok := strings.Cut(out, "status: "); ok {
		s, _, _ := strings.Cut(rest, ",")
		return s
	}
	return "no answer: " + out
}

func digShort(t *testing.T, sb *netns.NS, name string) string {
	return strings.TrimSpace(dig(t, sb, "+short", name))
}

// checkResolvConf reads the sandbox's resolv.conf and checks it lists no
// loopback server and only servers that answer.
func checkResolvConf(t *testing.T, sb *netns.NS, wantServer netip.Addr) {
	t.Helper()
	rc, err := dns.ReadResolvConf(filepath.Join(dns.NetnsDir, sb.Name(), "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Nameservers) == 0 || rc.Nameservers[0] != wantServer {
		t.Errorf("%s resolv.conf servers %v, want %s first", sb, rc.Nameservers, wantServer)
	}
	for _, a := range rc.Nameservers {
		if a.IsLoopback() {
			t.Errorf("%s resolv.conf lists loopback %s", sb, a)
		}
	}
	if len(rc.Search) != 1 || rc.Search[0] != "lab.test" {
		t.Errorf("%s resolv.conf search %v, want the host's lab.test", sb, rc.Search)
	}
}

func goLookup(sb *netns.NS, server netip.Addr, name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (c net.Conn, err error) {
		err = sb.Do(func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, netip.AddrPortFrom(server, 53).String())
			return err
		})
		return c, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.LookupHost(ctx, name)
}

func waitNoHelper(t *testing.T, h *Host) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for h.DNSHelperPID() != 0 {
		if time.Now().After(deadline) {
			pid := h.DNSHelperPID()
			unix.Kill(pid, unix.SIGKILL)
			t.Fatalf("DNS helper %d still runs after the last endpoint detached (killed)", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDNSEndToEnd(t *testing.T) {
	for _, mode := range []DNSMode{DNSHelper, DNSInProcess} {
		name := string(mode)
		if name == "" {
			name = "helper"
		}
		t.Run(name, func(t *testing.T) { testDNSEndToEnd(t, mode) })
	}
}

func testDNSEndToEnd(t *testing.T, mode DNSMode) {
	l := newDNSLab(t)
	h := l.host(t, mode)
	n1 := Network{Name: "n1", Subnet: netip.MustParsePrefix("10.88.7.0/24")}
	n2 := Network{Name: "n2", Subnet: netip.MustParsePrefix("10.88.8.0/24")}
	a, b, c := testns.New(t, "a"), testns.New(t, "b"), testns.New(t, "c")
	epA := mustAttach(t, h, a, n1, AttachOptions{Hostname: "alpha", Aliases: []string{"db"}, ExtraHosts: map[string]netip.Addr{"extra": netip.MustParseAddr("192.0.2.99")}})
	epB := mustAttach(t, h, b, n1, AttachOptions{Hostname: "bravo"})
	epC := mustAttach(t, h, c, n2, AttachOptions{Hostname: "charlie"})
	ctx := context.Background()
	t.Cleanup(func() {
		for _, ep := range []*Endpoint{epA, epB, epC} {
			h.Detach(ctx, ep)
		}
	})
	aAddr := epA.Addr(false).String()
	gw1 := netip.MustParseAddr("10.88.7.1")

	checkResolvConf(t, b, gw1)
	checkResolvConf(t, c, netip.MustParseAddr("10.88.8.1"))
	// /etc/netns/NAME is a link to the files kept in dns.NetnsHomeDir().
	if target, err := os.Readlink(filepath.Join(dns.NetnsDir, a.Name())); err != nil || target != filepath.Join(dns.NetnsHomeDir(), a.Name()) {
		t.Errorf("/etc/netns/%s links to %q (%v), want %s", a.Name(), target, err, filepath.Join(dns.NetnsHomeDir(), a.Name()))
	}
	hosts, _ := os.ReadFile(filepath.Join(dns.NetnsDir, a.Name(), "hosts"))
	if !strings.Contains(string(hosts), aAddr+"\talpha db "+a.Name()) || !strings.Contains(string(hosts), "192.0.2.99\textra") || !strings.Contains(string(hosts), "127.0.0.1\tlocalhost") {
		t.Errorf("hosts of a:\n%s", hosts)
	}

	// Names and aliases, any case, with or without the domain, from B.
	for _, name := range []string{"alpha", "db", "ALPHA.", "alpha.sandnet.internal", a.Name()} {
		if got := digShort(t, b, name); got != aAddr {
			t.Errorf("dig %s from b: %q, want %s", name, got, aAddr)
		}
	}
	if got, err := goLookup(b, gw1, "db"); err != nil || len(got) != 1 || got[0] != aAddr {
		t.Errorf("Go resolver in b: db = %v, %v", got, err)
	}
	if got := digShort(t, b, "-x"+aAddr); got != "alpha.sandnet.internal.\ndb.sandnet.internal.\n"+a.Name()+".sandnet.internal." && !strings.HasPrefix(got, "alpha.sandnet.internal.") {
		t.Errorf("reverse lookup of %s: %q", aAddr, got)
	}
	// The system resolver (the C library, reading the sandbox's
	// resolv.conf as NS.Start shows it, like ip netns exec) finds alpha
	// through the network's name server, and alpha answers.
	getent := exec.Command("getent", "hosts", "alpha")
	var out strings.Builder
	getent.Stdout, getent.Stderr = &out, &out
	if err := b.Start(getent); err != nil {
		t.Fatal(err)
	}
	if err := getent.Wait(); err != nil || !strings.HasPrefix(out.String(), aAddr+" ") {
		t.Errorf("getent hosts alpha in b (NS.Start): %v\n%s", err, out.String())
	}
	if err := testns.Ping(b, aAddr); err != nil {
		t.Errorf("ping alpha (%s) from b: %v", aAddr, err)
	}
	// Another network's sandbox does not resolve n1's names.
	if s := digStatus(dig(t, c, "alpha")); s != "NXDOMAIN" {
		t.Errorf("alpha from c (network n2): %s, want NXDOMAIN", s)
	}
	if got := digShort(t, c, "charlie"); got != epC.Addr(false).String() {
		t.Errorf("charlie from c: %q", got)
	}
	// Other names go to the upstream server, through the host namespace.
	if got := digShort(t, b, "upstream.test"); got != "192.0.2.7" {
		t.Errorf("forwarded upstream.test: %q, want 192.0.2.7", got)
	}
	if s := digStatus(dig(t, b, "silent.test")); s != "SERVFAIL" {
		t.Errorf("silent upstream: %s, want SERVFAIL before dig's 4 s timeout", s)
	}

	// After A detaches, its names are gone and so are its files.
	if err := h.Detach(ctx, epA); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpha", "db"} {
		if s := digStatus(dig(t, b, name)); s != "NXDOMAIN" {
			t.Errorf("%s after detach: %s, want NXDOMAIN", name, s)
		}
	}
	if _, err := os.Lstat(filepath.Join(dns.NetnsDir, a.Name())); !os.IsNotExist(err) {
		t.Errorf("/etc/netns/%s left after detach: %v", a.Name(), err)
	}
	if _, err := os.Lstat(filepath.Join(dns.NetnsHomeDir(), a.Name())); !os.IsNotExist(err) {
		t.Errorf("the files of /etc/netns/%s left in %s after detach: %v", a.Name(), dns.NetnsHomeDir(), err)
	}
	for _, ep := range []*Endpoint{epB, epC} {
		if err := h.Detach(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	for _, sb := range []*netns.NS{a, b, c} {
		if _, err := os.Lstat(filepath.Join(dns.NetnsDir, sb.Name())); !os.IsNotExist(err) {
			t.Errorf("/etc/netns/%s left: %v", sb.Name(), err)
		}
	}
	// The last endpoint gone, the server stops: the port is free again.
	waitNoHelper(t, h)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.hns.Do(func() error {
			pc, err := net.ListenPacket("udp", "0.0.0.0:53")
			if err == nil {
				pc.Close()
			}
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port 53 still taken in the host namespace after the last detach: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if left := hostResidue(t, h); len(left) > 1 { // the lab's own veth snt-up0
		t.Errorf("left behind: %v", left)
	}
}

func TestDNSInternalNetworkResolvesItsOwnNames(t *testing.T) {
	l := newDNSLab(t)
	h := l.host(t, DNSInProcess)
	n := Network{Name: "int", Subnet: netip.MustParsePrefix("10.88.9.0/24"), Internal: true}
	a, b := testns.New(t, "a"), testns.New(t, "b")
	epA := mustAttach(t, h, a, n, AttachOptions{Hostname: "alpha"})
	epB := mustAttach(t, h, b, n, AttachOptions{Hostname: "bravo"})
	t.Cleanup(func() { h.Detach(context.Background(), epA); h.Detach(context.Background(), epB) })
	if got := digShort(t, b, "alpha"); got != epA.Addr(false).String() {
		t.Errorf("alpha on an internal network: %q", got)
	}
	if s := digStatus(dig(t, b, "upstream.test")); s != "NXDOMAIN" || l.asked("upstream.test") {
		t.Errorf("an internal network's server: upstream.test %s (want NXDOMAIN), upstream asked: %v", s, l.asked("upstream.test"))
	}
}

func TestDNSCallerServersAndPaths(t *testing.T) {
	l := newDNSLab(t)
	h := l.host(t, DNSInProcess)
	a := testns.New(t, "a")
	dir := t.TempDir()
	ep := mustAttach(t, h, a, Network{Name: "n1", Subnet: netip.MustParsePrefix("10.88.10.0/24")}, AttachOptions{
		DNS: []netip.Addr{netip.MustParseAddr("10.250.0.2")}, DNSSearch: []string{"corp.test"}, DNSOptions: []string{"ndots:2"},
		ResolvConfPath: filepath.Join(dir, "resolv.conf"), HostsPath: filepath.Join(dir, "hosts"),
	})
	rc, err := dns.ReadResolvConf(filepath.Join(dir, "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rc.Nameservers) != "[10.250.0.2]" || fmt.Sprint(rc.Search) != "[lab.test corp.test]" || fmt.Sprint(rc.Options) != "[edns0 ndots:2]" {
		t.Errorf("resolv.conf %+v", rc)
	}
	if fmt.Sprint(ep.DNS) != "[10.250.0.2]" || len(ep.ResolvConf) != 2 || len(ep.Hosts) != 2 {
		t.Errorf("endpoint DNS %v files %v %v", ep.DNS, ep.ResolvConf, ep.Hosts)
	}
	if err := h.Detach(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dns.NetnsDir, a.Name())); !os.IsNotExist(err) {
		t.Errorf("/etc/netns/%s left: %v", a.Name(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "resolv.conf")); err != nil {
		t.Errorf("the caller's resolv.conf was removed: %v", err)
	}
}

func TestDNSPortTaken(t *testing.T) {
	for _, mode := range []DNSMode{DNSInProcess, DNSHelper} {
		name := string(mode)
		if name == "" {
			name = "helper"
		}
		t.Run(name, func(t *testing.T) {
			l := newDNSLab(t)
			h := l.host(t, mode)
			n, err := h.CreateNetwork(context.Background(), Network{Name: "n1", Subnet: netip.MustParsePrefix("10.88.11.0/24")})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.RemoveNetwork(context.Background(), "n1") })
			var pc net.PacketConn
			if err := l.hns.Do(func() (err error) {
				pc, err = net.ListenPacket("udp", netip.AddrPortFrom(n.Gateway, 53).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			sb := testns.New(t, "a")
			_, err = h.AttachNS(context.Background(), sb, n, AttachOptions{})
			var se *StepError
			if !errors.Is(err, ErrInUse) || !errors.As(err, &se) || se.Step != StepDNS {
				b, _ := os.ReadFile(filepath.Join(l.dir, "dns", "helper.log"))
				t.Fatalf("attach with port 53 taken: %v, want ErrInUse at %q; helper log:\n%s", err, StepDNS, b)
			}
			t.Log(err)
			if left := hostResidue(t, h); len(left) > 1 { // the lab's own veth snt-up0
				t.Errorf("left behind: %v", left)
			}
			if _, err := os.Lstat(filepath.Join(dns.NetnsDir, sb.Name())); !os.IsNotExist(err) {
				t.Errorf("/etc/netns/%s left: %v", sb.Name(), err)
			}
			waitNoHelper(t, h)
		})
	}
}

// TestDNSHelperAttacherProcess is not a test: TestDNSHelperOutlivesAttacher
// runs it in a separate process that attaches one sandbox and exits.
func TestDNSHelperAttacherProcess(t *testing.T) {
	spec := os.Getenv("SANDNET_TEST_DNS_ATTACH")
	if spec == "" {
		t.Skip("helper process for TestDNSHelperOutlivesAttacher")
	}
	var a struct{ HostNS, StateDir, Resolv, Resolved, Sandbox string }
	if err := json.Unmarshal([]byte(spec), &a); err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(context.Background(), HostConfig{NetNS: a.HostNS, StateDir: a.StateDir, ResolvConf: a.Resolv, ResolvedConf: a.Resolved})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Attach(context.Background(), a.Sandbox, Network{Name: "n1", Subnet: netip.MustParsePrefix("10.88.12.0/24")}, AttachOptions{Hostname: "alpha"}); err != nil {
		t.Fatal(err)
	}
}

func TestDNSHelperOutlivesAttacher(t *testing.T) {
	l := newDNSLab(t)
	a, b := testns.New(t, "a"), testns.New(t, "b")
	// Orphans (the helper, once its attacher exits) are adopted by this
	// process, so it can see the helper exit and reap it.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	spec, _ := json.Marshal(map[string]string{"HostNS": l.hns.Name(), "StateDir": l.dir, "Resolv": l.resolv, "Resolved": l.resd, "Sandbox": a.Name()})
	cmd := exec.Command(os.Args[0], "-test.run=^TestDNSHelperAttacherProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SANDNET_TEST_DNS_ATTACH="+string(spec))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("attacher process: %v\n%s", err, out)
	}
	h := l.host(t, DNSHelper)
	pid := h.DNSHelperPID()
	if pid == 0 {
		t.Fatal("no DNS helper runs after the attacher exited")
	}
	t.Cleanup(func() { unix.Kill(pid, unix.SIGKILL) }) // last resort only: it has exited by then
	epB := mustAttach(t, h, b, Network{Name: "n1"}, AttachOptions{Hostname: "bravo"})
	t.Cleanup(func() { h.Detach(context.Background(), epB) })
	if h.DNSHelperPID() != pid {
		t.Errorf("a second helper started: %d, was %d", h.DNSHelperPID(), pid)
	}
	eps, _ := h.Endpoints("n1")
	var aAddr string
	for _, ep := range eps {
		if ep.SandboxID == a.Name() {
			aAddr = ep.Addr(false).String()
		}
	}
	if got := digShort(t, b, "alpha"); got != aAddr || aAddr == "" {
		t.Errorf("alpha from b, attached by a process that exited: %q, want %q", got, aAddr)
	}
	if got := digShort(t, a, "bravo"); got != epB.Addr(false).String() {
		t.Errorf("bravo from a: %q", got)
	}
	// Detach from this process what the other one attached: the name goes.
	if err := h.DetachSandbox(context.Background(), "n1", a.Name()); err != nil {
		t.Fatal(err)
	}
	if s := digStatus(dig(t, b, "alpha")); s != "NXDOMAIN" {
		t.Errorf("alpha after detach: %s", s)
	}
	if err := h.Detach(context.Background(), epB); err != nil {
		t.Fatal(err)
	}
	// The last endpoint gone, the helper exits by itself.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if got == pid || errors.Is(err, unix.ECHILD) && unix.Kill(pid, 0) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DNS helper %d still runs after the last detach", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h.DNSHelperPID() != 0 {
		t.Error("helper PID file left")
	}
}
