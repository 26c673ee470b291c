package examples_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/internal/tools"
	"github.com/sandnet/sandnet/netns"
)

// The output conventions of examples/internal/guide.
const (
	cmdPrefix  = "    $ "
	keptPrefix = "lab kept: "
)

// buildFlags are passed to go build for the examples (race_test.go adds -race).
var buildFlags []string

// TestExamples builds every example under examples/ and runs it four ways:
// to the end (exit 0, nothing left behind), interrupted at its second step
// (nothing left behind), failing at its third step (a failed proof or a
// panic, by the guide's SANDNET_GUIDE_FAIL hook: nothing left behind,
// /etc/netns included), and with -keep, to replay the commands it printed
// in a fresh lab and compare the kernel state with what the program built.
func TestExamples(t *testing.T) {
	testns.RequireRoot(t)
	dirs := discover(t)
	bin := t.TempDir()
	for _, d := range dirs {
		args := append(append([]string{"build"}, buildFlags...), "-o", filepath.Join(bin, d), "./"+d)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", d, err, out)
		}
	}
	var (
		mu       sync.Mutex
		replayed []string
		ran      int // replay subtests run (fewer than the examples under -run)
	)
	skippedReplay := false
	for i, d := range dirs {
		prog := filepath.Join(bin, d)
		t.Run(d, func(t *testing.T) {
			t.Run("run", func(t *testing.T) {
				before := snapshot(t)
				cmd := exec.Command(prog)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Errorf("%s: %v\n%s", d, err, out)
				}
				checkResidue(t, before, snapshot(t), cmd.Process.Pid)
			})
			t.Run("interrupt", func(t *testing.T) {
				before := snapshot(t)
				out, pid := interrupt(t, prog)
				if !strings.Contains(out, "\n== 2.") {
					t.Logf("%s ended before its second step; nothing to interrupt", d)
				}
				checkResidue(t, before, snapshot(t), pid)
			})
			t.Run("fail", func(t *testing.T) {
				mode := []string{"error", "panic"}[i%2]
				before := snapshot(t)
				cmd := exec.Command(prog)
				cmd.Env = append(os.Environ(), guide.FailEnv+"="+mode+":3")
				out, err := cmd.CombinedOutput()
				want := 1
				if mode == "panic" {
					want = 2
				}
				var ee *exec.ExitError
				switch {
				case !strings.Contains(string(out), "failing on purpose at step 3"):
					t.Logf("%s has no third step; nothing to fail (%v)", d, err)
				case !errors.As(err, &ee) || ee.ExitCode() != want:
					t.Errorf("%s failing (%s) at step 3: %v, want exit status %d\n%s", d, mode, err, want, out)
				}
				checkResidue(t, before, snapshot(t), cmd.Process.Pid)
			})
			t.Run("replay", func(t *testing.T) {
				mu.Lock()
				ran++
				mu.Unlock()
				before := snapshot(t)
				defer func() {
					if t.Skipped() {
						mu.Lock()
						skippedReplay = true
						mu.Unlock()
					}
				}()
				cmds, pid := replay(t, prog)
				mu.Lock()
				replayed = append(replayed, cmds...)
				mu.Unlock()
				checkResidue(t, before, snapshot(t), pid)
			})
		})
	}
	// The issue asks for at least these steps to be checked by replay.
	if ran < len(dirs) || skippedReplay {
		return
	}
	all := strings.Join(replayed, "\n")
	for _, step := range []string{"type veth", "type bridge", " addr add ", " route add ", " -t nat -A ", " -j DNAT ", "/resolv.conf"} {
		if !strings.Contains(all, step) {
			t.Errorf("no replayed command contains %q: that step went unchecked", step)
		}
	}
}

// discover returns the directories of examples/ that hold a main package.
func discover(t *testing.T) []string {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "internal" || e.Name() == "testdata" {
			continue
		}
		src, err := os.ReadFile(filepath.Join(e.Name(), "main.go"))
		if err == nil && regexp.MustCompile(`(?m)^package main$`).Match(src) {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 0 {
		t.Fatal("no examples found")
	}
	return dirs
}

// interrupt runs prog, sends it SIGINT when it starts its second step, and
// returns its output once it has exited.
func interrupt(t *testing.T, prog string) (string, int) {
	cmd := exec.Command(prog)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	sc := bufio.NewScanner(stdout)
	sent := false
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
		if !sent && strings.HasPrefix(sc.Text(), "== 2.") {
			cmd.Process.Signal(syscall.SIGINT)
			sent = true
		}
	}
	err = cmd.Wait()
	t.Logf("interrupted at step 2: %v", err)
	return b.String(), cmd.Process.Pid
}

// replay runs prog -keep, dumps the state of the namespaces it kept, deletes
// them, runs the commands it printed in a shell, dumps again and compares.
// It returns the commands replayed.
func replay(t *testing.T, prog string) (cmds []string, pid int) {
	keep := exec.Command(prog, "-keep")
	out, err := keep.CombinedOutput()
	if keep.Process != nil {
		pid = keep.Process.Pid
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if c, ok := strings.CutPrefix(l, cmdPrefix); ok {
			cmds = append(cmds, c)
		}
		if n, ok := strings.CutPrefix(l, keptPrefix); ok {
			names = strings.Fields(n)
		}
	}
	t.Cleanup(func() {
		for _, n := range names {
			netns.Delete(context.Background(), n)
			testns.RemoveEtcNetns(n)
		}
	})
	if err != nil {
		t.Fatalf("-keep: %v\n%s", err, out)
	}
	if len(names) == 0 {
		t.Skip("the example does not keep its lab with -keep; nothing to replay")
	}
	// Replaying needs every program the commands name (iptables, nft,
	// conntrack... the ones a new machine lacks).
	for _, c := range cmds {
		for _, word := range strings.Fields(c) {
			if slices.Contains(tools.Optional, word) {
				testns.NeedProgram(t, "replaying "+c, word)
			}
		}
	}
	script := strings.Join(cmds, "\n")
	want := dump(t, names, script)
	for _, n := range names {
		if err := netns.Delete(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		// The sandbox's resolv.conf and hosts: the replay writes them again.
		testns.RemoveEtcNetns(n)
	}
	for _, c := range cmds {
		out, err := exec.Command("sh", "-c", c).CombinedOutput()
		if err != nil && !flushFound(c, err) {
			t.Fatalf("replaying %q: %v\n%s", c, err, out)
		}
	}
	got := dump(t, names, script)
	if want != got {
		t.Errorf("the printed commands built a different state.\nprogram:\n%s\nreplay:\n%s\ncommands:\n%s", want, got, script)
	}
	if testing.Verbose() {
		t.Logf("%d commands rebuilt the same state:\n%s", len(cmds), got)
	}
	for _, n := range names {
		if err := netns.Delete(context.Background(), n); err != nil {
			t.Error(err)
		}
		testns.RemoveEtcNetns(n)
	}
	return cmds, pid
}

// flushFound reports whether a replayed command failed only because it had
// nothing to do: `conntrack -D` (sandnet flushes stale entries of a port it
// publishes) exits 1 when no entry matched, which in a fresh lab is the
// normal case. It changes no state either way.
func flushFound(cmd string, err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == 1 && strings.Contains(cmd, "conntrack -D ")
}

// etcNetns holds the files `ip netns exec NAME` bind-mounts over /etc.
const etcNetns = "/etc/netns"

// dump describes the kernel state of the named namespaces: links (type,
// master, MTU, up, peer; the MAC when the commands set it), addresses and
// routes (without IPv6 link-local ones, which derive from random MACs),
// ip_forward and firewall rules. Interface indexes are replaced by names.
// It adds the files of /etc/netns/NAME (a sandbox's resolv.conf and hosts),
// which are part of what the printed commands rebuild.
//
// Processes are not part of the state compared: the embedded name server
// of 05-dns (and of every bridge network) is a program, which the printed
// commands describe in a shell comment ("# a DNS server ... answers on
// GATEWAY port 53") but cannot start, and which stops with the example
// anyway. The files that point sandboxes at it are compared.
func dump(t *testing.T, names []string, script string) string {
	nss := map[string]*netns.NS{}
	for _, n := range names {
		ns, err := netns.OpenName(n)
		if err != nil {
			t.Fatalf("kept namespace %s: %v", n, err)
		}
		defer ns.Close()
		nss[n] = ns
	}
	var b strings.Builder
	for _, n := range names {
		ns := nss[n]
		nl, err := ns.Netlink()
		if err != nil {
			t.Fatal(err)
		}
		links, err := nl.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		byIndex := map[int]string{}
		for _, l := range links {
			byIndex[l.Attrs().Index] = l.Attrs().Name
		}
		// nsid (as seen from n) -> namespace name, to name veth peers.
		ids := map[int]string{}
		for _, o := range names {
			if id, err := nl.GetNetNsIdByFd(nss[o].Fd()); err == nil && id >= 0 {
				ids[id] = o
			}
		}
		var lines []string
		for _, l := range links {
			a := l.Attrs()
			s := fmt.Sprintf("link %s type=%s mtu=%d up=%v", a.Name, l.Type(), a.MTU, a.Flags&net.FlagUp != 0)
			if a.MasterIndex != 0 {
				s += " master=" + byIndex[a.MasterIndex]
			}
			if mac := a.HardwareAddr.String(); mac != "" && strings.Contains(script, mac) {
				s += " mac=" + mac
			}
			if _, ok := l.(*netlink.Veth); ok && a.ParentIndex != 0 {
				s += " peer=" + peerName(t, n, a, ids)
			}
			lines = append(lines, s)
		}
		addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() && a.IP.To4() == nil {
				continue
			}
			lines = append(lines, fmt.Sprintf("addr %s %s scope=%d", byIndex[a.LinkIndex], a.IPNet, a.Scope))
		}
		routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if r.Dst != nil && r.Dst.IP.To4() == nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
				continue
			}
			lines = append(lines, fmt.Sprintf("route table=%d type=%d dst=%v gw=%v dev=%s scope=%d proto=%d src=%v",
				r.Table, r.Type, r.Dst, r.Gw, byIndex[r.LinkIndex], r.Scope, r.Protocol, r.Src))
		}
		fwd, err := ns.ReadSysctl("net.ipv4.ip_forward")
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, "ip_forward="+fwd)
		for _, save := range []string{"iptables-save", "ip6tables-save"} {
			if _, err := exec.LookPath(save); err != nil {
				continue
			}
			out, err := ns.Command(context.Background(), save).Output()
			if err != nil {
				t.Fatalf("%s in %s: %v", save, n, err)
			}
			for _, r := range rules(string(out)) {
				lines = append(lines, save+": "+r)
			}
		}
		files, _ := os.ReadDir(filepath.Join(etcNetns, n))
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(etcNetns, n, f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("file %s/%s/%s %q", etcNetns, n, f.Name(), data))
		}
		sort.Strings(lines)
		fmt.Fprintf(&b, "[%s]\n  %s\n", n, strings.Join(lines, "\n  "))
	}
	return b.String()
}

// peerName names a veth's peer as NAMESPACE/IFNAME.
func peerName(t *testing.T, self string, a *netlink.LinkAttrs, ids map[int]string) string {
	where := self
	if a.NetNsID >= 0 {
		var ok bool
		if where, ok = ids[a.NetNsID]; !ok {
			return fmt.Sprintf("nsid%d/if%d (outside the lab)", a.NetNsID, a.ParentIndex)
		}
	}
	ns, err := netns.OpenName(where)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nl, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	l, err := nl.LinkByIndex(a.ParentIndex)
	if err != nil {
		return fmt.Sprintf("%s/if%d (gone)", where, a.ParentIndex)
	}
	return where + "/" + l.Attrs().Name
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// rules normalises iptables-save output: no comments, no counters.
func rules(out string) []string {
	var rs []string
	for _, l := range strings.Split(out, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		rs = append(rs, counters.ReplaceAllString(l, "[-]"))
	}
	return rs
}

// state is what an example could leave behind outside its namespaces.
type state struct {
	namespaces []string
	etcNetns   []string // directories of /etc/netns
	links      []string
	rules      []string
}

// fixtureNS matches the namespaces of sandnet's test fixtures (testns's
// "snt-", the benchmarks' "snb-"), which other tests make and remove while
// the examples run; no example names a namespace like that.
var fixtureNS = regexp.MustCompile(`^sn[a-z]-`)

// snapshot reads the machine's namespace list (without test fixtures), its
// links and its firewall rules. It only reads.
func snapshot(t *testing.T) state {
	var s state
	names, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !fixtureNS.MatchString(n) {
			s.namespaces = append(s.namespaces, n)
		}
	}
	dirs, _ := os.ReadDir(etcNetns)
	for _, d := range dirs {
		if !fixtureNS.MatchString(d.Name()) {
			s.etcNetns = append(s.etcNetns, d.Name())
		}
	}
	out, err := exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			s.links = append(s.links, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(save); err != nil {
			continue
		}
		out, err := exec.Command(save).Output()
		if err != nil {
			t.Fatalf("%s: %v", save, err)
		}
		for _, r := range rules(string(out)) {
			s.rules = append(s.rules, save+": "+r)
		}
	}
	return s
}

// checkResidue compares two snapshots. Namespaces and /etc/netns entries
// count only when named like the example run's own (TAG-SHORT-PID, pid
// given): other programs on the machine make and remove theirs meanwhile.
func checkResidue(t *testing.T, before, after state, pid int) {
	t.Helper()
	own := func(names []string) []string {
		var out []string
		for _, n := range names {
			if strings.HasSuffix(n, fmt.Sprintf("-%d", pid)) {
				out = append(out, n)
			}
		}
		return out
	}
	before.namespaces, after.namespaces = own(before.namespaces), own(after.namespaces)
	before.etcNetns, after.etcNetns = own(before.etcNetns), own(after.etcNetns)
	for _, c := range []struct {
		what          string
		before, after []string
	}{
		{"namespace (ip netns list)", before.namespaces, after.namespaces},
		{"directory of " + etcNetns, before.etcNetns, after.etcNetns},
		{"link in the machine's namespace (ip -o link)", before.links, after.links},
		{"firewall rule in the machine's namespace", before.rules, after.rules},
	} {
		for _, x := range c.after {
			if !slices.Contains(c.before, x) {
				t.Errorf("left behind: %s %s", c.what, x)
			}
		}
		for _, x := range c.before {
			if !slices.Contains(c.after, x) {
				t.Errorf("removed: %s %s", c.what, x)
			}
		}
	}
}

// TestDumpSeesDifferences makes sure the replay comparison is not vacuous:
// an address, a route or a link's state changes the dump.
func TestDumpSeesDifferences(t *testing.T) {
	ns := testns.New(t, "dump")
	names := []string{ns.Name()}
	prev := dump(t, names, "")
	for _, change := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", "192.0.2.1/24", "dev", "lo"},
		{"ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.2"},
		{"ip", "link", "set", "lo", "mtu", "1400"},
	} {
		testns.Run(t, ns, change[0], change[1:]...)
		next := dump(t, names, "")
		if next == prev {
			t.Errorf("%v did not change the dump:\n%s", change, next)
		}
		prev = next
	}
}
