package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sandnet/sandnet/diag"
	"github.com/sandnet/sandnet/internal/dnsrun"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// sandnetBin builds the command once per test run.
func sandnetBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sandnet-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sandnet")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cli drives the built binary as a user would, always with a private lab
// namespace as the host and a temporary state dir.
type cli struct {
	t     *testing.T
	bin   string
	lab   *netns.NS
	state string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	lab := testns.New(t, "lab")
	c := &cli{t: t, bin: sandnetBin(t), lab: lab, state: filepath.Join(t.TempDir(), "state")}
	// Registered after t.TempDir's removal, so it runs before it.
	t.Cleanup(func() { stopHelper(t, c.state) })
	return c
}

// stopHelper ends the DNS helper the commands started for the state dir,
// if one still holds it (its server.lock), and waits until it lets go, so
// that it writes nothing there while the temporary directory is removed.
func stopHelper(t *testing.T, state string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := dnsrun.StopHelper(ctx, state); err != nil {
		t.Error(err)
	}
}

func (c *cli) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--host-ns", c.lab.Name(), "--state-dir", c.state}, args...)
	cmd := exec.CommandContext(ctx, c.bin, full...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("sandnet %s: %v", strings.Join(args, " "), err)
	}
	c.t.Logf("$ sandnet %s  (exit %d)\n%s%s", strings.Join(args, " "), code, o.String(), e.String())
	return o.String(), e.String(), code
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("sandnet %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs a command that must fail with one line on stderr holding want.
func (c *cli) fails(want string, args ...string) {
	c.t.Helper()
	_, errOut, code := c.run(args...)
	if code == 0 {
		c.t.Fatalf("sandnet %s succeeded, want an error", strings.Join(args, " "))
	}
	if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "sandnet: ") || !strings.Contains(errOut, want) {
		c.t.Errorf("sandnet %s: stderr %q, want one line 'sandnet: ...%s...'", strings.Join(args, " "), errOut, want)
	}
}

func randomName(t *testing.T, tag string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return testns.Prefix + tag + "-" + hex.EncodeToString(b)
}

// addNS runs `sandnet ns add` and removes the namespace when the test ends.
func (c *cli) addNS(tag string) *netns.NS {
	c.t.Helper()
	name := randomName(c.t, tag)
	c.t.Cleanup(func() {
		netns.Delete(context.Background(), name)
		testns.RemoveEtcNetns(name)
	})
	out := c.ok("ns", "add", name)
	ns, err := netns.OpenName(name)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { ns.Close() })
	if want := fmt.Sprintf("%s net:[%d]", name, ns.Inode()); strings.TrimSpace(out) != want {
		c.t.Errorf("ns add printed %q, want %q", out, want)
	}
	return ns
}

func ipOut(t *testing.T, args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return string(out), err
}

// startDNS serves names on addr:53 inside ns; other names are NXDOMAIN.
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

var (
	vethRE = regexp.MustCompile(`\$ ip -n \S+ link add (\S+) .*type veth peer name eth0 .*netns (\S+)`)
	addrRE = regexp.MustCompile(`\$ ip -n (\S+) addr add (\S+) dev eth0`)
	brRE   = regexp.MustCompile(`\$ ip -n \S+ link add (\S+) .*type bridge`)
)

func TestEndToEnd(t *testing.T) {
	c := newCLI(t)
	// Until the NAT work is merged, forwarding is the lab's own business.
	if _, err := c.lab.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	sb := c.addNS("e2e")
	name := sb.Name()
	if out, _ := ipOut(t, "netns", "list"); !strings.Contains(out, name) {
		t.Fatalf("ip netns list does not show %s:\n%s", name, out)
	}
	if out := c.ok("ns", "ls"); !regexp.MustCompile(regexp.QuoteMeta(name) + `\s+net:\[` + fmt.Sprint(sb.Inode()) + `\]`).MatchString(out) {
		t.Errorf("ns ls does not show %s", name)
	}

	// A network, explained: the printed bridge exists afterwards.
	out := c.ok("--explain", "net", "create", "n1", "--subnet", "10.66.0.0/24")
	m := brRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("net create --explain printed no 'ip link add ... type bridge':\n%s", out)
	}
	bridge := m[1]
	if o, err := ipOut(t, "-n", c.lab.Name(), "addr", "show", "dev", bridge); err != nil || !strings.Contains(o, "10.66.0.1/24") {
		t.Fatalf("bridge %s in the lab: %v\n%s", bridge, err, o)
	}
	if out := c.ok("net", "ls"); !regexp.MustCompile(`n1\s+bridge\s+10.66.0.0/24\s+10.66.0.1\s+` + bridge + `\s+0`).MatchString(out) {
		t.Errorf("net ls:\n%s", out)
	}

	// Attach with a published port.
	stdout := c.ok("--explain", "attach", name, "--net", "n1", "--name", "web", "-p", "127.0.0.1:8080:80/tcp")
	iptablesRule := strings.Contains(stdout, "iptables") && strings.Contains(stdout, "--dport 8080")
	nftElement := strings.Contains(stdout, "nft 'add element inet sandnet") && strings.Contains(stdout, "tcp . 8080")
	if !iptablesRule && !nftElement {
		t.Errorf("attach --explain -p lacks the DNAT rule:\n%s", stdout)
	}

	// --explain against what the kernel shows.
	vm := vethRE.FindStringSubmatch(stdout)
	am := addrRE.FindStringSubmatch(stdout)
	if vm == nil || am == nil || !strings.Contains(stdout, "route add default via 10.66.0.1 dev eth0") {
		t.Fatalf("attach --explain lacks the veth, address or route command:\n%s", stdout)
	}
	hostVeth, addr := vm[1], am[2]
	if vm[2] != name || am[1] != name {
		t.Errorf("explained commands name namespace %s / %s, want %s", vm[2], am[1], name)
	}
	if o, err := ipOut(t, "-n", c.lab.Name(), "-o", "link", "show", "dev", hostVeth); err != nil || !strings.Contains(o, "master "+bridge) {
		t.Errorf("explained veth %s is not on %s in the lab: %v %s", hostVeth, bridge, err, o)
	}
	if o, err := ipOut(t, "-n", name, "-o", "addr", "show", "dev", "eth0"); err != nil || !strings.Contains(o, "inet "+addr) {
		t.Errorf("explained address %s is not on eth0: %v %s", addr, err, o)
	}
	if o, _ := ipOut(t, "-n", name, "route", "show", "default"); !strings.Contains(o, "default via 10.66.0.1 dev eth0") {
		t.Errorf("default route: %s", o)
	}

	// DNS for doctor: a name server on the bridge, named in resolv.conf.
	dnsAddr := netip.MustParseAddr("10.66.0.254")
	testns.Run(t, c.lab, "ip", "addr", "add", "10.66.0.254/24", "dev", bridge)
	startDNS(t, c.lab, dnsAddr, map[string]netip.Addr{"web.": netip.MustParsePrefix(addr).Addr()})
	os.MkdirAll(filepath.Join(diag.EtcNetns, name), 0o755)
	if err := os.WriteFile(filepath.Join(diag.EtcNetns, name, "resolv.conf"), []byte("nameserver 10.66.0.254\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// inspect, for people and for scripts.
	out = c.ok("inspect", name)
	for _, want := range []string{fmt.Sprintf("net:[%d]", sb.Inode()), "eth0", addr, "0.0.0.0/0", "10.66.0.1", "RESOLV.CONF", "10.66.0.254", hostVeth, bridge, "n1"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect table lacks %q", want)
		}
	}
	var rep diag.Report
	if err := json.Unmarshal([]byte(c.ok("inspect", name, "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.NetNS.Inode != sb.Inode() || len(rep.Attached) != 1 || rep.Attached[0].HostIfName != hostVeth || rep.Attached[0].Bridge != bridge || rep.Attached[0].Addresses[0].String() != addr {
		t.Errorf("inspect --json: %+v", rep)
	}
	if len(rep.Attached[0].Ports) != 1 || rep.Attached[0].Ports[0].HostPort != 8080 {
		t.Errorf("inspect --json ports: %+v", rep.Attached[0].Ports)
	}

	// doctor: all good, then one broken thing.
	out = c.ok("doctor", name)
	if strings.Contains(out, "FAIL") || !regexp.MustCompile(`PASS\s+dns-resolve\s+web is `+regexp.QuoteMeta(netip.MustParsePrefix(addr).Addr().String())).MatchString(out) {
		t.Errorf("doctor on a healthy sandbox:\n%s", out)
	}
	testns.Run(t, c.lab, "ip", "link", "set", hostVeth, "down")
	out, _, code := c.run("doctor", name, "--json")
	var doc struct {
		OK     bool
		Checks []diag.Result
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if r, _ := diag.Find(doc.Checks, diag.CheckBridgePort); code != 1 || doc.OK || r.Status != diag.Fail || !strings.Contains(r.Reason, hostVeth+" is down") {
		t.Errorf("doctor with the bridge port down: exit %d, %+v", code, doc)
	}
	testns.Run(t, c.lab, "ip", "link", "set", hostVeth, "up")
	waitFor(t, "doctor to pass again", func() bool { _, _, code := c.run("doctor", name); return code == 0 })

	// The picture.
	for _, args := range [][]string{{"graph"}, {"inspect", name, "--graph"}} {
		dot := c.ok(args...)
		if !strings.Contains(dot, hostVeth) || !strings.Contains(dot, bridge) {
			t.Errorf("sandnet %s lacks the veth or bridge:\n%s", args, dot)
		}
		if testns.HasCommand("dot") {
			cmd := exec.Command("dot", "-Tsvg")
			cmd.Stdin = strings.NewReader(dot)
			if svg, err := cmd.Output(); err != nil || !bytes.Contains(svg, []byte("<svg")) {
				t.Errorf("dot -Tsvg on sandnet %s: %v", args, err)
			}
		}
	}

	// The guide's route: a process in the sandbox, found by its PID.
	pid := startInside(t, sb)
	var byPID diag.Report
	if err := json.Unmarshal([]byte(c.ok("inspect", fmt.Sprintf("pid:%d", pid), "--json")), &byPID); err != nil {
		t.Fatal(err)
	}
	link, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if link != fmt.Sprintf("net:[%d]", byPID.NetNS.Inode) || byPID.NetNS.Inode != sb.Inode() || len(byPID.Attached) != 1 || byPID.Attached[0].Network != "n1" {
		t.Errorf("inspect pid:%d: netns %+v (ls -l /proc/PID/ns/net: %s), attached %+v", pid, byPID.NetNS, link, byPID.Attached)
	}
	want, err := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-n", "ip", "-o", "addr").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{name, fmt.Sprintf("pid:%d", pid), fmt.Sprintf("/proc/%d/ns/net", pid)} {
		if got := c.ok("ns", "exec", spec, "--", "ip", "-o", "addr"); got != string(want) {
			t.Errorf("ns exec %s -- ip -o addr differs from nsenter -t PID -n:\n%s\nvs\n%s", spec, got, want)
		}
	}
	if _, _, code := c.run("ns", "exec", name, "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("ns exec exit status %d, want the command's 7", code)
	}

	// Tear down, and check the kernel agrees.
	c.ok("detach", name, "--net", "n1")
	if _, err := ipOut(t, "-n", c.lab.Name(), "link", "show", "dev", hostVeth); err == nil {
		t.Errorf("host veth %s still there after detach", hostVeth)
	}
	if o, _ := ipOut(t, "-n", name, "-o", "link"); strings.Contains(o, "eth0") {
		t.Errorf("eth0 still in the sandbox after detach:\n%s", o)
	}
	c.ok("net", "rm", "n1")
	if _, err := ipOut(t, "-n", c.lab.Name(), "link", "show", "dev", bridge); err == nil {
		t.Errorf("bridge %s still there after net rm", bridge)
	}
	if out := c.ok("net", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("net ls --json after rm: %s", out)
	}
	c.ok("ns", "del", name)
	if out, _ := ipOut(t, "netns", "list"); strings.Contains(out, name) {
		t.Errorf("%s still listed after ns del", name)
	}
}

// startInside starts a long sleep inside sb (the way a container's process
// lives in its namespace) and returns its PID once it is in there.
func startInside(t *testing.T, sb *netns.NS) int {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", sb.Name(), "sleep", "120")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	waitFor(t, "the process to enter the namespace", func() bool {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		return err == nil && l == fmt.Sprintf("net:[%d]", sb.Inode())
	})
	return pid
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	c := newCLI(t)
	c.fails("not found", "attach", "snt-no-such-ns", "--net", "n1")
	c.fails("host bits", "net", "create", "bad", "--subnet", "10.0.0.1/24")
	c.fails("unknown command", "frobnicate")
	c.fails("--net NAME is required", "attach", "x")
	c.fails("flag provided but not defined", "net", "ls", "--bogus")
	c.fails("network \"nope\"", "detach", "x", "--net", "nope")
	if _, _, code := c.run("net", "create"); code != 2 {
		t.Errorf("a missing argument exits %d, want 2", code)
	}
}

func TestGCAfterNamespaceVanished(t *testing.T) {
	c := newCLI(t)
	if out := c.ok("gc"); !strings.Contains(out, "nothing to collect") {
		t.Errorf("gc on an empty host: %q", out)
	}
	sb := c.addNS("gc")
	c.ok("net", "create", "gcnet")
	c.ok("attach", sb.Name(), "--net", "gcnet")
	c.ok("ns", "del", sb.Name()) // the sandbox vanishes behind sandnet's back
	out := c.ok("gc")
	if !strings.Contains(out, "removed endpoint gcnet/"+sb.Name()) || !strings.Contains(out, "sandbox namespace is gone") {
		t.Errorf("gc output: %q", out)
	}
	if out := c.ok("gc"); !strings.Contains(out, "nothing to collect") {
		t.Errorf("second gc: %q", out)
	}
	c.ok("net", "rm", "gcnet")
}
