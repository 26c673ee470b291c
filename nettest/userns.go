package nettest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/netns"
)

// ChildEnv marks a process that nettest started inside a new user namespace.
const ChildEnv = "NETTEST_USERNS_CHILD"

// ReexecEnv set to "test" makes Main leave re-executing to each NewLab
// (one child per test) instead of running the whole binary in one child.
const ReexecEnv = "NETTEST_REEXEC"

// Main runs the tests of m. As root it is m.Run. Without root it runs the
// whole test binary again, with the same arguments, inside a new user
// namespace where the caller is root (uid and gid mapped to the caller's),
// with its own network and mount namespaces, and returns its exit code:
// every test, benchmark and Example then runs as "root" there, with results
// reported as usual. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(nettest.Main(m)) }
//
// Without Main, NewLab does the same per test. Where user namespaces are
// not allowed, Main runs m anyway, and NewLab skips.
func Main(m *testing.M) int {
	if inChild() {
		if err := setupChild(); err != nil {
			fmt.Fprintf(os.Stderr, "nettest: %v\n", err)
			return 1
		}
		return runChecked(m)
	}
	if os.Geteuid() == 0 || os.Getenv(ReexecEnv) == "test" {
		return runChecked(m)
	}
	cmd := childCommand(os.Args[1:])
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "nettest: cannot run the tests in a user namespace (%v); running them unprivileged, where labs skip\n", err)
		return m.Run()
	}
}

// runChecked runs m, then fails the run if namespaces of this process's
// labs and underlays are left behind (a residue check).
func runChecked(m *testing.M) int {
	code := m.Run()
	if left := Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "nettest: namespaces left behind by this run: %v\n", left)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Leftovers lists the namespaces under /run/netns that labs and underlays
// made by this process created and that still exist.
func Leftovers() []string {
	names, _ := netns.List()
	made.Lock()
	defer made.Unlock()
	var left []string
	for _, n := range names {
		for id := range made.ids {
			if strings.HasPrefix(n, Prefix+id+"-") {
				left = append(left, n)
			}
		}
	}
	return left
}

// made records the IDs handed out in this process.
var made = struct {
	sync.Mutex
	ids map[string]bool
}{ids: map[string]bool{}}

// childCommand runs this binary in a new user, network and mount namespace.
func childCommand(args []string) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	return cmd
}

// inChild reports whether this process is a nettest child: marked by
// ChildEnv and really inside a user namespace other than the machine's.
func inChild() bool {
	if os.Getenv(ChildEnv) == "" {
		return false
	}
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// privileged says whether labs can be made in this process.
func privileged() error {
	if os.Geteuid() == 0 {
		return nil
	}
	return errors.New("not root: run as root, or call nettest.Main from TestMain to run in a user namespace")
}

// ensurePrivileged returns when t can make labs in this process; without
// root it runs t in a child in a user namespace and ends t here.
func ensurePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	runInChild(t)
}

// runInChild runs t alone in a child process inside a user namespace, then
// ends t with the child's result. It does not return.
func runInChild(t testing.TB) {
	t.Helper()
	args := []string{"-test.run=" + runPattern(t.Name()), "-test.v=true", "-test.count=1", "-test.bench=^$"}
	if f := flag.Lookup("test.timeout"); f != nil {
		args = append(args, "-test.timeout="+f.Value.String())
	}
	cmd := childCommand(args)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Skipf("nettest: needs root or user namespaces; starting a child in a new user namespace failed: %v", err)
	}
	name := regexp.QuoteMeta(t.Name())
	switch {
	case err != nil:
		t.Fatalf("nettest: the test failed inside a user namespace (child %v):\n%s", err, out.String())
	case regexp.MustCompile(`--- SKIP: ` + name + ` `).Match(out.Bytes()):
		t.Skipf("nettest: the test skipped inside a user namespace:\n%s", out.String())
	case regexp.MustCompile(`--- PASS: ` + name + ` `).Match(out.Bytes()):
		t.Logf("nettest: child output:\n%s", out.String())
		t.Skip("nettest: PASS inside a user namespace (ran in a child process as root of a new user namespace; its output is above)")
	default:
		t.Fatalf("nettest: the child in the user namespace did not run the test:\n%s", out.String())
	}
}

// runPattern is a -test.run pattern matching exactly the test called name.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// childReady is ChildEnv's value once the private mounts are in place, so
// that processes the child starts do not mount over them again.
const childReady = "ready"

var (
	childOnce sync.Once
	childErr  error
)

// setupChild, in a nettest child, gives the process private mounts so that
// named namespaces work: a tmpfs on /run/netns (on /run if /run/netns does
// not exist, since the real root owns /run) and on /run/sandnet and
// /etc/netns where they exist. Elsewhere it does nothing.
func setupChild() error {
	if !inChild() {
		return nil
	}
	childOnce.Do(func() {
		if os.Getenv(ChildEnv) == childReady {
			return // a parent in the same namespaces mounted them already
		}
		if childErr = mountPrivate(); childErr == nil {
			os.Setenv(ChildEnv, childReady)
		}
	})
	return childErr
}

func mountPrivate() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private in the user namespace: %w", err)
	}
	tmpfs := func(dir string) error {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
			return fmt.Errorf("mounting a tmpfs on %s in the user namespace: %w", dir, err)
		}
		return nil
	}
	if _, err := os.Stat(netns.Dir); err == nil {
		if err := tmpfs(netns.Dir); err != nil {
			return err
		}
	} else {
		if err := tmpfs("/run"); err != nil {
			return err
		}
		if err := os.MkdirAll(netns.Dir, 0o755); err != nil {
			return err
		}
	}
	// /dev/shm too: where /run is not tmpfs, the files of /etc/netns/NAME
	// live there (dns.NetnsHomeDir).
	for _, dir := range []string{"/run/sandnet", "/etc/netns", "/dev/shm"} {
		if _, err := os.Stat(dir); err == nil {
			if err := tmpfs(dir); err != nil {
				return err
			}
		}
	}
	return nil
}
