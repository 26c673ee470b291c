package netns_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

func TestCreateIsSeenByIPNetns(t *testing.T) {
	ns := testns.New(t, "ns")
	names, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, ns.Name()) {
		t.Fatalf("List() = %v, want it to contain %s", names, ns.Name())
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ns.Name()) {
		t.Fatalf("ip netns list does not show %s:\n%s", ns.Name(), out)
	}
	out, err = exec.Command("ip", "netns", "exec", ns.Name(), "ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "eth0") || !strings.Contains(string(out), "lo:") {
		t.Fatalf("a fresh namespace should hold only lo, got:\n%s", out)
	}
}

func TestCreateDoesNotMoveCaller(t *testing.T) {
	before, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	ns := testns.New(t, "ns")
	after, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) || before.Equal(ns) {
		t.Fatal("creating a namespace moved the caller")
	}
}

func TestOpenByNamePathAndPID(t *testing.T) {
	ns := testns.New(t, "ns")
	byName, err := netns.Open(ns.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer byName.Close()
	byPath, err := netns.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer byPath.Close()
	if !byName.Equal(ns) || !byPath.Equal(ns) || byName.Inode() != ns.Inode() {
		t.Fatal("the same namespace opened three ways differs")
	}

	// A process started inside: its /proc/PID/ns/net is the namespace.
	cmd := ns.Command(context.Background(), "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// nsenter execs sleep in place, so the PID is sleep's once it has entered.
	var byPID *netns.NS
	for range 200 {
		byPID, err = netns.Open(fmt.Sprintf("pid:%d", cmd.Process.Pid))
		if err == nil && byPID.Equal(ns) {
			break
		}
		if byPID != nil {
			byPID.Close()
			byPID = nil
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 5e6}, nil)
	}
	if byPID == nil {
		t.Fatalf("pid:%d never showed namespace %s", cmd.Process.Pid, ns)
	}
	defer byPID.Close()
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("net:[%d]", ns.Inode()); link != want {
		t.Fatalf("/proc/PID/ns/net = %s, want %s", link, want)
	}
}

func TestOpenErrors(t *testing.T) {
	testns.RequireRoot(t)
	cases := map[string]error{
		"snt-does-not-exist": netns.ErrNotFound,
		"/etc/hostname":      netns.ErrInvalid, // a file, not a namespace
		"/proc/self/ns/uts":  netns.ErrInvalid, // a namespace, not a network one
		"pid:-3":             netns.ErrInvalid,
		"pid:abc":            netns.ErrInvalid,
		"..":                 netns.ErrInvalid,
	}
	for spec, want := range cases {
		ns, err := netns.Open(spec)
		if !errors.Is(err, want) {
			t.Errorf("Open(%q) = %v, want %v", spec, err, want)
		}
		if ns != nil {
			ns.Close()
		}
	}
}

func TestCreateTwiceAndDeleteIdempotent(t *testing.T) {
	ns := testns.New(t, "ns")
	if _, err := netns.Create(context.Background(), ns.Name()); !errors.Is(err, netns.ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	if err := netns.Delete(context.Background(), "snt-never-made"); err != nil {
		t.Fatalf("Delete of a missing name = %v, want nil", err)
	}
}

func TestDoRunsInsideAndComesBack(t *testing.T) {
	ns := testns.New(t, "ns")
	me, _ := netns.Current()
	defer me.Close()
	var inside []net.Interface
	err := ns.Do(func() error {
		var err error
		inside, err = net.Interfaces()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inside) != 1 || inside[0].Name != "lo" {
		t.Fatalf("inside the new namespace Do saw %v, want only lo", inside)
	}
	// Many Do calls from many goroutines never leak a thread into ns.
	errs := make(chan error, 64)
	for range 64 {
		go func() {
			errs <- ns.Do(func() error { return nil })
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for range 32 {
		ino := threadInode(t)
		if ino != me.Inode() {
			t.Fatalf("a thread of the caller is in namespace %d, want %d", ino, me.Inode())
		}
	}
}

func threadInode(t *testing.T) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestDoPanicIsCarriedBack(t *testing.T) {
	ns := testns.New(t, "ns")
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want boom", r)
		}
	}()
	ns.Do(func() error { panic("boom") })
}

func TestNetlinkHandleIsBound(t *testing.T) {
	ns := testns.New(t, "ns")
	nl, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("links in a fresh namespace: %d, want only lo", len(links))
	}
}

func TestSysctlWritesOnlyInside(t *testing.T) {
	ns := testns.New(t, "ns")
	changed, err := ns.Sysctl("net.ipv4.ip_forward", "1")
	if err != nil || !changed {
		t.Fatalf("Sysctl = %v, %v; want changed", changed, err)
	}
	changed, err = ns.Sysctl("net.ipv4.ip_forward", "1")
	if err != nil || changed {
		t.Fatalf("second Sysctl = %v, %v; want unchanged", changed, err)
	}
	if v, _ := ns.ReadSysctl("net.ipv4.ip_forward"); v != "1" {
		t.Fatalf("ip_forward inside = %q", v)
	}
}

// TestSysctlFollowsARemadeDevice: Sysctl keeps a key's file open; when its
// device is deleted and made again under the same name, reads and writes
// act on the new device's setting, and only inside the namespace.
func TestSysctlFollowsARemadeDevice(t *testing.T) {
	ns := testns.New(t, "ns")
	key := "net/ipv4/conf/h33dev/forwarding"
	addDev := func() {
		t.Helper()
		if out, err := ns.Command(context.Background(), "ip", "link", "add", "h33dev", "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("ip link add: %v: %s", err, out)
		}
	}
	addDev()
	if changed, err := ns.Sysctl(key, "1"); err != nil || !changed {
		t.Fatalf("Sysctl = %v, %v; want changed", changed, err)
	}
	if out, err := ns.Command(context.Background(), "ip", "link", "del", "h33dev").CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v: %s", err, out)
	}
	if _, err := ns.ReadSysctl(key); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadSysctl of a deleted device's setting: %v, want ErrNotExist", err)
	}
	addDev()
	if v, err := ns.ReadSysctl(key); err != nil || v != "0" {
		t.Fatalf("ReadSysctl of the new device = %q, %v; want 0", v, err)
	}
	if changed, err := ns.Sysctl(key, "1"); err != nil || !changed {
		t.Fatalf("Sysctl on the new device = %v, %v; want changed", changed, err)
	}
	out, err := ns.Command(context.Background(), "cat", "/proc/sys/"+key).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("the new device's setting read from inside: %q, %v", out, err)
	}
	if _, err := os.Stat("/proc/sys/" + key); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the caller's namespace has %s: %v", key, err)
	}
}

func TestShell(t *testing.T) {
	ns := testns.New(t, "ns")
	if got, want := ns.Shell("ip link set lo up"), "ip -n "+ns.Name()+" link set lo up"; got != want {
		t.Errorf("Shell = %q, want %q", got, want)
	}
	if got, want := ns.Shell("iptables -L"), "ip netns exec "+ns.Name()+" iptables -L"; got != want {
		t.Errorf("Shell = %q, want %q", got, want)
	}
}

func TestShellForPIDNamespace(t *testing.T) {
	testns.RequireRoot(t)
	ns, err := netns.OpenPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	want := fmt.Sprintf("nsenter -t %d -n ip addr", os.Getpid())
	if got := ns.Shell("ip addr"); got != want {
		t.Errorf("Shell = %q, want %q", got, want)
	}
}

// TestStartLikeIPNetnsExec: a program started with NS.Start sees the
// namespace's /etc/netns/NAME files in place of /etc's (the system
// resolver finds a name from its hosts file), a /sys that lists the
// namespace's own devices, and its network; the caller's /etc and /sys
// do not change.
func TestStartLikeIPNetnsExec(t *testing.T) {
	ns := testns.New(t, "exec")
	dir := netns.EtcDir + "/" + ns.Name()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/hosts", []byte("127.0.0.1 localhost\n10.1.2.3 h14-api-only-in-the-sandbox\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostsBefore, _ := os.ReadFile("/etc/hosts")
	script := "getent hosts h14-api-only-in-the-sandbox; echo devices: $(ls /sys/class/net); ip -o link show | wc -l"
	cmd := exec.Command("sh", "-c", script)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := ns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "10.1.2.3 ") || lines[1] != "devices: lo" || strings.TrimSpace(lines[2]) != "1" {
		t.Errorf("inside %s:\n%s\nwant the sandbox's hosts entry, only lo in /sys/class/net, one link", ns, out.String())
	}
	if after, _ := os.ReadFile("/etc/hosts"); string(after) != string(hostsBefore) {
		t.Error("the caller's /etc/hosts changed")
	}
	if _, err := os.Stat("/sys/class/net/lo"); err != nil {
		t.Errorf("the caller's /sys: %v", err)
	}
	// The same through Command (nsenter --net): the host's /etc/hosts.
	if out, err := ns.Command(context.Background(), "getent", "hosts", "h14-api-only-in-the-sandbox").CombinedOutput(); err == nil {
		t.Errorf("Command resolved the sandbox-only name (%s): it should not bind-mount /etc", out)
	}
}

// TestOpenProcSysSeesTheCallersNamespace: a setting opened with
// OpenProcSys is the calling thread's namespace's, through /proc (the first
// lookups) and through the process's own procfs instances alike (later
// ones, renewed every 64).
func TestOpenProcSysSeesTheCallersNamespace(t *testing.T) {
	a, b := testns.New(t, "psa"), testns.New(t, "psb")
	if _, err := a.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	read := func(ns *netns.NS) string {
		t.Helper()
		var v string
		if err := ns.Do(func() error {
			f, err := netns.OpenProcSys("net/ipv4/ip_forward", os.O_RDONLY)
			if err != nil {
				return err
			}
			defer f.Close()
			buf := make([]byte, 8)
			k, err := f.Read(buf)
			v = strings.TrimSpace(string(buf[:k]))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i := range 150 {
		if got := read(a); got != "1" {
			t.Fatalf("lookup %d in a: ip_forward = %q, want 1", i, got)
		}
		if got := read(b); got != "0" {
			t.Fatalf("lookup %d in b: ip_forward = %q, want 0", i, got)
		}
	}
}
