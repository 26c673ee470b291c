package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/diag"
	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// leftovers describes what a sandbox could leave behind: named namespaces
// (those of names, and run's own run-RANDOM ones: other tests on the
// machine make and remove theirs meanwhile), links of the lab host, /etc/netns entries, files of the state dir
// (leases, endpoint records) and the lab's nftables rules and set elements.
func (c *cli) leftovers(names ...string) string {
	c.t.Helper()
	var lines []string
	ours := func(n string) bool { return slices.Contains(names, n) || strings.HasPrefix(n, "run-") }
	all, err := netns.List()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, n := range all {
		if ours(n) {
			lines = append(lines, "netns "+n)
		}
	}
	nl, err := c.lab.Netlink()
	if err != nil {
		c.t.Fatal(err)
	}
	links, err := nl.LinkList()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, l := range links {
		lines = append(lines, "link "+l.Attrs().Name)
	}
	for _, dir := range []string{diag.EtcNetns, dns.NetnsHomeDir()} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if ours(e.Name()) {
				lines = append(lines, dir+" "+e.Name())
			}
		}
	}
	// The name-server runner's own files (dns/: its PID, status, their
	// temporary files) come and go with the runner, which starts and stops
	// on its own time, not with a command.
	filepath.Walk(c.state, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasSuffix(p, ".lock") && !strings.HasSuffix(p, ".log") &&
			!strings.HasPrefix(p, filepath.Join(c.state, "dns")+"/") {
			lines = append(lines, "state "+strings.TrimPrefix(p, c.state))
		}
		return nil
	})
	conn, err := nftables.New(nftables.WithNetNSFd(c.lab.Fd()))
	if err != nil {
		c.t.Fatal(err)
	}
	tables, _ := conn.ListTables()
	for _, tb := range tables {
		chains, _ := conn.ListChainsOfTableFamily(tb.Family)
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			rules, _ := conn.GetRules(tb, ch)
			lines = append(lines, fmt.Sprintf("nft %s/%s rules=%d", tb.Name, ch.Name, len(rules)))
		}
		sets, _ := conn.GetSets(tb)
		for _, s := range sets {
			elems, _ := conn.GetSetElements(s)
			lines = append(lines, fmt.Sprintf("nft %s/%s elements=%d", tb.Name, s.Name, len(elems)))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// runLab is a lab with network n1 and a sandbox "web" attached to it.
func runLab(t *testing.T) (*cli, *netns.NS, string) {
	c := newCLI(t)
	c.ok("net", "create", "n1", "--subnet", "10.67.0.0/24")
	web := c.addNS("web")
	out := c.ok("attach", web.Name(), "--net", "n1", "--name", "web")
	f := strings.Fields(out) // attached NS to n1: eth0 10.67.0.2/24 via ...
	if len(f) < 6 {
		t.Fatalf("attach printed %q", out)
	}
	return c, web, strings.Split(f[5], "/")[0]
}

// TestRunLeavesNothing: sandnet run makes a sandbox, runs the command in
// it (the network's names resolve through the system resolver, the exit
// status is the command's) and leaves nothing: no namespace, veth, rule,
// /etc/netns entry or lease.
func TestRunLeavesNothing(t *testing.T) {
	c, web, webAddr := runLab(t)
	name := randomName(t, "run")
	before := c.leftovers(name)
	t.Cleanup(func() { netns.Delete(t.Context(), name); testns.RemoveEtcNetns(name) })

	c.ok("run", "--net", "n1", "--name", name, "--alias", "api", "-p", "18080:80", "-p", "127.0.0.1:18081:81/tcp", "--", "true")
	if after := c.leftovers(name); after != before {
		t.Errorf("sandnet run -- true left something:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, _, code := c.run("run", "--net", "n1", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("run -- sh -c 'exit 7': exit %d, want 7", code)
	}
	// The system resolver inside finds the network's names (the name
	// server, through the sandbox's resolv.conf) and the sandbox's own.
	out := c.ok("run", "--net", "n1", "--name", name, "--alias", "api", "--", "sh", "-c", "getent hosts web; getent hosts api; ls /sys/class/net")
	if f := strings.Fields(out); len(f) < 2 || f[0] != webAddr || f[1] != "web" || !strings.Contains(out, " api\n") || !strings.HasSuffix(out, "\neth0\nlo\n") {
		t.Errorf("run -- getent hosts web; getent hosts api; ls /sys/class/net: %q, want %s web, api, eth0 and lo", out, webAddr)
	}
	// ns exec shows a sandbox the same: another sandbox resolves web.
	other := c.addNS("other")
	c.ok("attach", other.Name(), "--net", "n1")
	if out := c.ok("ns", "exec", other.Name(), "--", "getent", "hosts", "web"); !strings.HasPrefix(out, webAddr+" ") {
		t.Errorf("ns exec %s -- getent hosts web: %q, want %s", other.Name(), out, webAddr)
	}
	if _, _, code := c.run("ns", "exec", web.Name(), "--", "sh", "-c", "exit 3"); code != 3 {
		t.Errorf("ns exec -- sh -c 'exit 3': exit %d, want 3", code)
	}
	c.ok("detach", other.Name(), "--net", "n1")
	// --keep leaves the sandbox attached, for a look; then it is removed by hand.
	if _, errOut, code := c.run("run", "--net", "n1", "--name", name, "--keep", "--", "true"); code != 0 || !strings.Contains(errOut, "kept sandbox "+name) {
		t.Fatalf("run --keep: exit %d, stderr %q", code, errOut)
	}
	if _, err := netlinkLinkIn(name); err != nil {
		t.Errorf("run --keep: the sandbox is not attached: %v", err)
	}
	c.ok("detach", name, "--net", "n1")
	c.ok("ns", "del", name)
	if after := c.leftovers(name); after != before {
		t.Errorf("left after the runs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRunSIGTERM: SIGTERM to sandnet run reaches the command, and the
// sandbox is removed before sandnet exits with the command's status.
func TestRunSIGTERM(t *testing.T) {
	c, _, _ := runLab(t)
	name := randomName(t, "term")
	before := c.leftovers(name)
	t.Cleanup(func() { netns.Delete(t.Context(), name); testns.RemoveEtcNetns(name) })
	cmd := exec.Command(c.bin, "--host-ns", c.lab.Name(), "--state-dir", c.state, "run", "--net", "n1", "--name", name, "--",
		"sh", "-c", "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("sandnet run did not start the command: %q %s", sc.Text(), stderr.String())
	}
	if _, err := netlinkLinkIn(name); err != nil {
		t.Errorf("the sandbox is not attached while the command runs: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	var rest strings.Builder
	for sc.Scan() {
		rest.WriteString(sc.Text() + "\n")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("sandnet run did not end after SIGTERM")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 42 || rest.String() != "got TERM\n" {
		t.Errorf("after SIGTERM: %v, output %q, stderr %q; want exit 42 and 'got TERM'", err, rest.String(), stderr.String())
	}
	if after := c.leftovers(name); after != before {
		t.Errorf("left after SIGTERM:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// netlinkLinkIn returns eth0 of the named namespace.
func netlinkLinkIn(name string) (netlink.Link, error) {
	ns, err := netns.OpenName(name)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	nl, err := ns.Netlink()
	if err != nil {
		return nil, err
	}
	return nl.LinkByName("eth0")
}
