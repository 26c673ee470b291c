package nettest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/nettest"
)

// Without root, the whole binary runs in a user namespace (set
// NETTEST_REEXEC=test to have each NewLab re-execute its own test instead).
func TestMain(m *testing.M) { os.Exit(nettest.Main(m)) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func serveHTTP(t *testing.T, s *nettest.Sandbox, addr string, h http.Handler) {
	t.Helper()
	ln, err := s.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func TestTwoSandboxesHTTP(t *testing.T) {
	lab := nettest.NewLab(t)
	n := lab.Network(sandnet.Network{})
	a := lab.Sandbox("a", n)
	b := lab.Sandbox("b", n)
	if !a.Addr().IsValid() || a.Addr() == b.Addr() || !n.Subnet.Contains(a.Addr()) {
		t.Fatalf("addresses a=%s b=%s, want two distinct ones in %s", a.Addr(), b.Addr(), n.Subnet)
	}
	serveHTTP(t, a, ":80", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from a", r.RemoteAddr)
	}))
	resp, err := b.HTTPClient().Get("http://a/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "hello " + b.Addr().String() + ":"
	if !strings.HasPrefix(string(body), want) {
		t.Fatalf("body %q, want it to start with %q (a sees b's own address)", body, want)
	}
}

func TestUDPAndRunAndCommand(t *testing.T) {
	lab := nettest.NewLab(t)
	n := lab.Network(sandnet.Network{Name: "udp", Subnet: netip.MustParsePrefix("10.50.0.0/24")})
	a := lab.Sandbox("a", n, sandnet.AttachOptions{IP: netip.MustParseAddr("10.50.0.10"), Aliases: []string{"server"}})
	b := lab.Sandbox("b", n)
	pc, err := a.ListenPacket("udp", ":9999")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 100)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo "), buf[:k]...), from)
		}
	}()
	c, err := b.Dial(ctxT(t), "udp", "server:9999")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hi"))
	buf := make([]byte, 100)
	k, err := c.Read(buf)
	if err != nil || string(buf[:k]) != "echo hi" {
		t.Fatalf("udp echo: %q, %v", buf[:k], err)
	}

	var ifs []net.Interface
	if err := a.Run(func() (err error) { ifs, err = net.Interfaces(); return err }); err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 2 || ifs[1].Name != "eth0" {
		t.Fatalf("inside a: %v, want lo and eth0", ifs)
	}
	out, err := a.Command(ctxT(t), "ip", "-o", "-4", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.50.0.10/24") {
		t.Fatalf("ip addr in a: %v\n%s", err, out)
	}
	if _, err := b.Dial(ctxT(t), "tcp", "nobody:80"); err == nil || !strings.Contains(err.Error(), "no such host") {
		t.Fatalf("dialing an unknown name: %v, want no such host", err)
	}
}

func TestResolverIsPluggable(t *testing.T) {
	lab := nettest.NewLab(t)
	n := lab.Network(sandnet.Network{})
	a := lab.Sandbox("a", n)
	b := lab.Sandbox("b", n)
	lab.AddResolver(func(ctx context.Context, from *nettest.Sandbox, host string) ([]netip.Addr, error) {
		if host == "db.example" {
			return []netip.Addr{a.Addr()}, nil
		}
		return nil, nil
	})
	serveHTTP(t, a, ":8080", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "db") }))
	resp, err := b.HTTPClient().Get("http://db.example:8080/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// Three lab hosts on one underlay switch, each with its own network and
// sandbox, routed: every sandbox reaches every other across hosts.
func TestThreeHosts(t *testing.T) {
	u := nettest.NewUnderlay(t, netip.Prefix{})
	var sbs []*nettest.Sandbox
	var labs []*nettest.Lab
	for i := 1; i <= 3; i++ {
		lab := nettest.NewLab(t)
		// Routed: no NAT, and the other hosts may route to the sandboxes directly.
		n := lab.Network(sandnet.Network{Name: "local", Subnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", 60+i)), Routed: true})
		sbs = append(sbs, lab.Sandbox(fmt.Sprintf("s%d", i), n))
		up := u.Join(lab)
		if up.Addr.Addr() != netip.MustParseAddr(fmt.Sprintf("192.168.77.%d", i)) {
			t.Fatalf("host %d uplink %v", i, up)
		}
		labs = append(labs, lab)
	}
	u.Route()
	nettest.Matrix(t, nettest.AllPairs, sbs...)

	// TCP across hosts: s3 serves, s1 dials its address.
	serveHTTP(t, sbs[2], ":80", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) }))
	c := sbs[0].HTTPClient()
	resp, err := c.Get("http://" + sbs[2].Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), sbs[0].Addr().String()+":") {
		t.Fatalf("s3 saw %q, want s1's address (routed, no NAT)", body)
	}

	// Cut host 2 off the underlay: s2 is alone, s1 and s3 still talk.
	u.Partition(labs[1])
	nettest.Matrix(t, nettest.Groups([]*nettest.Sandbox{sbs[0], sbs[2]}, sbs[1:2]), sbs...)
	u.Heal(labs[1])
	if err := nettest.WaitReachable(ctxT(t), sbs[0], sbs[1]); err != nil {
		t.Fatal(err)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	lab := nettest.NewLab(t)
	n := lab.Network(sandnet.Network{})
	a, b, c := lab.Sandbox("a", n), lab.Sandbox("b", n), lab.Sandbox("c", n)
	nettest.Matrix(t, nettest.AllPairs, a, b, c)

	c.Partition()
	nettest.Matrix(t, nettest.Groups([]*nettest.Sandbox{a, b}), a, b, c)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := a.Dial(ctx, "tcp", "c:80"); err == nil {
		t.Fatal("dialed c through a partition")
	}

	c.Heal()
	if err := nettest.WaitReachable(ctxT(t), a, c); err != nil {
		t.Fatal(err)
	}
	nettest.Matrix(t, nettest.AllPairs, a, b, c)
}

func TestMatrixPrintsAGrid(t *testing.T) {
	lab := nettest.NewLab(t)
	n := lab.Network(sandnet.Network{})
	a, b := lab.Sandbox("alpha", n), lab.Sandbox("b", n)
	lonely := lab.Sandbox("lonely", sandnet.Network{})
	got := nettest.Reachability(a, b, lonely)
	if got.Matches(nettest.AllPairs) {
		t.Fatal("a sandbox without a network reached others")
	}
	grid := got.Grid(nettest.AllPairs)
	for _, want := range []string{"alpha", "lonely", "--!", "ok"} {
		if !strings.Contains(grid, want) {
			t.Fatalf("grid lacks %q:\n%s", want, grid)
		}
	}
	t.Logf("a failing matrix prints:\n%s", grid)
}

func TestUpstream(t *testing.T) {
	lab := nettest.NewLab(t)
	up := lab.Upstream()
	if lab.Upstream() != up || up.Addr() != nettest.UpstreamAddr {
		t.Fatalf("upstream %s at %s", up, up.Addr())
	}
	if slices.Contains(lab.Sandboxes(), up) {
		t.Fatal("the upstream is listed among the sandboxes")
	}
	out, err := exec.Command("ip", "-n", lab.NS.Name(), "route", "show", "default").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "via 203.0.113.1 dev wan0") {
		t.Fatalf("host default route: %v %s", err, out)
	}
	if err := nettest.PingAddr(ctxT(t), up, nettest.UpstreamHostAddr); err != nil {
		t.Fatal(err)
	}
	// A sandbox reaches the upstream once the upstream can route back (a
	// test of NAT would rely on masquerade instead).
	n := lab.Network(sandnet.Network{Subnet: netip.MustParsePrefix("10.70.0.0/24")})
	a := lab.Sandbox("a", n)
	if _, err := lab.NS.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if out, err := up.Command(ctxT(t), "ip", "route", "add", "10.70.0.0/24", "via", nettest.UpstreamHostAddr.String()).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := nettest.WaitReachable(ctxT(t), a, up); err != nil {
		t.Fatal(err)
	}
}

// A 20 Mbit/s limit on a's link, measured over a 4 MB transfer from a to b:
// the goodput must be within 20% of the limit.
func TestRateLimit(t *testing.T) {
	lab := nettest.NewLab(t)
	n := lab.Network(sandnet.Network{})
	a, b := lab.Sandbox("a", n), lab.Sandbox("b", n)
	const rate = 20_000_000 // bit/s
	const size = 4 << 20
	a.SetRate(rate)

	ln, err := b.Listen("tcp", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int64
		dur time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		k, err := io.ReadFull(c, buf[:1]) // the clock starts at the first byte
		start := time.Now()
		total := int64(k)
		if err == nil {
			var m int64
			m, err = io.CopyBuffer(io.Discard, c, buf)
			total += m
		}
		done <- result{total, time.Since(start), err}
	}()
	c, err := a.Dial(ctxT(t), "tcp", "b:5001")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(c, io.LimitReader(zeros{}, size)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	r := <-done
	if r.err != nil || r.n != size {
		t.Fatalf("received %d bytes, %v", r.n, r.err)
	}
	got := float64(r.n*8) / r.dur.Seconds()
	t.Logf("%d bytes in %v: %.2f Mbit/s (limit %.0f Mbit/s)", r.n, r.dur.Round(time.Millisecond), got/1e6, float64(rate)/1e6)
	if got < 0.8*rate || got > 1.2*rate {
		t.Fatalf("measured %.2f Mbit/s, want within 20%% of %d Mbit/s", got/1e6, rate/1_000_000)
	}
	a.SetRate(0) // removing the limit works too
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestNetemSkipsWhereMissing(t *testing.T) {
	lab := nettest.NewLab(t)
	n := lab.Network(sandnet.Network{})
	a, b := lab.Sandbox("a", n), lab.Sandbox("b", n)
	a.SetNetem(nettest.Netem{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1})
	// Only where the kernel has netem: the delay shows in a round trip.
	start := time.Now()
	if err := nettest.Ping(a, b); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 15*time.Millisecond {
		t.Fatalf("round trip %v with a 20ms delay", rtt)
	}
}

// 16 labs at once, each with the same network name and subnet: none sees
// another's objects.
func TestParallelLabs(t *testing.T) {
	for i := range 16 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			lab := nettest.NewLab(t)
			n := lab.Network(sandnet.Network{Name: "same", Subnet: netip.MustParsePrefix("10.99.0.0/24")})
			a := lab.Sandbox("a", n)
			b := lab.Sandbox("b", n)
			if a.Addr() != netip.MustParseAddr("10.99.0.2") {
				t.Errorf("a got %s, want the first address of its own lab's pool", a.Addr())
			}
			nettest.Matrix(t, nettest.AllPairs, a, b)
			nl, err := lab.NS.Netlink()
			if err != nil {
				t.Fatal(err)
			}
			links, _ := nl.LinkList()
			if len(links) != 4 { // lo, the bridge, two host veths
				var names []string
				for _, l := range links {
					names = append(names, l.Attrs().Name)
				}
				t.Errorf("lab host holds %v, want only its own lo, bridge and 2 veths", names)
			}
		})
	}
}

// TestCloseStopsTheNameServer: the DNS helper process a lab's sandbox
// started serves the lab's state dir, which goes with the lab; Close ends
// it and waits until it has let go of the dir (its server.lock), so it is
// not still writing there while the dir is removed (a test's t.TempDir
// cleanup failed with "directory not empty").
func TestCloseStopsTheNameServer(t *testing.T) {
	lab, err := nettest.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	lab.Sandbox("a", lab.Network(sandnet.Network{}))
	dir := filepath.Join(lab.Host.StateDir(), "dns")
	if _, err := os.Stat(filepath.Join(dir, "helper.pid")); err != nil {
		t.Skipf("no DNS helper process here (the name server runs in-process?): %v", err)
	}
	// The lock file outlives its directory while it is open here.
	lock, err := os.Open(filepath.Join(dir, "server.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		t.Fatal("no helper holds the lab's server.lock")
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("the lab's DNS helper still holds its server.lock after Close: %v", err)
	}
}

// A lab's namespaces are gone after the test, even when it panicked: the
// test binary runs a helper test that panics, in a child process.
func TestCleanupAfterPanic(t *testing.T) {
	if os.Getenv("NETTEST_HELPER_PANIC") != "" {
		lab := nettest.NewLab(t)
		lab.Sandbox("a", lab.Network(sandnet.Network{}))
		fmt.Printf("LAB=%s\n", lab.ID())
		panic("on purpose")
	}
	lab := nettest.NewLab(t) // as root or inside the user namespace from here
	before := snapshot(t)
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestCleanupAfterPanic$", "-test.v")
	cmd.Env = append(os.Environ(), "NETTEST_HELPER_PANIC=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "on purpose") {
		t.Fatalf("the helper should have panicked: %v\n%s", err, out)
	}
	var id string
	for _, line := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "LAB="); ok {
			id = s
		}
	}
	if id == "" {
		t.Fatalf("no lab id in:\n%s", out)
	}
	names, _ := netns.List()
	for _, n := range names {
		if strings.HasPrefix(n, nettest.Prefix+id+"-") {
			t.Errorf("namespace %s left behind after a panic", n)
		}
	}
	for _, n := range nettest.Leftovers() {
		if !strings.HasPrefix(n, nettest.Prefix+lab.ID()+"-") {
			t.Errorf("a lab of this process left %s", n)
		}
	}
	if after := snapshot(t); after != before {
		t.Errorf("this namespace changed:\nbefore: %s\nafter:  %s", before, after)
	}
}

// snapshot lists the links and addresses of the test's own namespace.
func snapshot(t *testing.T) string {
	out, err := exec.Command("ip", "-o", "addr").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	links, _ := exec.Command("ip", "-o", "link").CombinedOutput()
	return string(out) + string(links)
}

func TestBadInputFails(t *testing.T) {
	lab := nettest.NewLab(t)
	lab.Sandbox("x", sandnet.Network{})
	if _, err := lab.Sandboxes()[0].Dial(ctxT(t), "tcp", "no-port"); err == nil {
		t.Fatal("dial without a port worked")
	}
}

func BenchmarkLab20(b *testing.B) {
	for b.Loop() {
		lab := nettest.NewLab(b)
		n := lab.Network(sandnet.Network{})
		for i := range 20 {
			lab.Sandbox(fmt.Sprintf("s%d", i), n)
		}
		b.StopTimer()
		if err := lab.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
