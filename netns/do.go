package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Do runs fn with the calling code's view of the network being namespace n:
// sockets fn opens, sysctls it writes under /proc/sys/net and netlink calls it
// makes without a handle all act in n.
//
// fn runs on a fresh goroutine locked to its own OS thread, which enters n and
// leaves it again before it is released (the discipline of DESIGN.md). fn must
// not start goroutines that expect to be in n: they run on other threads. A
// panic in fn is carried back and re-raised in the caller.
//
// Equivalent to: nsenter --net=PATH (for one function).
func (n *NS) Do(fn func() error) error {
	var panicked any
	err := onFreshThread(func() error {
		if err := unix.Setns(n.Fd(), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("entering namespace %s: %w", n, err)
		}
		defer func() { panicked = recover() }()
		return fn()
	})
	if panicked != nil {
		panic(panicked)
	}
	return err
}

// Command returns a command that runs inside namespace n, through nsenter, so
// every exec.Cmd method works as usual.
//
// Equivalent to: nsenter --net=PATH NAME ARGS... (or nsenter -t PID -n for a
// namespace opened from a PID).
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.path, "--", name}, args...)...)
}

// Shell returns cmd as a user would type it to run inside n: `ip ...`
// becomes `ip -n NAME ...` for a named namespace, anything else is prefixed
// with `ip netns exec NAME`, `nsenter -t PID -n` (a namespace opened from a
// process) or `nsenter --net=PATH`. Explanations use it.
func (n *NS) Shell(cmd string) string {
	switch {
	case n.name != "" && len(cmd) > 3 && cmd[:3] == "ip ":
		return "ip -n " + n.name + " " + cmd[3:]
	case n.name != "":
		return "ip netns exec " + n.name + " " + cmd
	case n.path == "/proc/self/ns/net":
		return cmd
	case pidOf(n.path) > 0:
		return fmt.Sprintf("nsenter -t %d -n %s", pidOf(n.path), cmd)
	default:
		return "nsenter --net=" + n.path + " " + cmd
	}
}

// Sysctl sets a sysctl inside n, only when its value differs, and reports
// whether it changed it. key is dotted, e.g. "net.ipv4.ip_forward".
//
// The first use of a key enters n (Do) to open its file, once, which is
// then kept open: a /proc/sys/net file acts in the namespace it was opened
// in, from whichever thread reads or writes it, so later uses need no
// switch (and opening is the dear part, see OpenProcSys). A file whose
// setting went away (a device deleted, and maybe made again) fails, and
// is opened again.
//
// Equivalent to: sysctl -w KEY=VALUE (inside n)
func (n *NS) Sysctl(key, value string) (changed bool, err error) {
	err = n.withSysctl(key, func(f *os.File) (stale bool, err error) {
		cur, err := preadSysctl(f)
		if err != nil {
			return true, fmt.Errorf("reading sysctl %s: %w", key, err)
		}
		if cur == value {
			return false, nil
		}
		if _, err := f.WriteAt([]byte(value), 0); err != nil {
			stale = errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EBADF)
			return stale, fmt.Errorf("writing sysctl %s=%s: %w", key, value, err)
		}
		changed = true
		return false, nil
	})
	return changed, err
}

// ReadSysctl reads a sysctl inside n, through a file kept open as Sysctl
// does.
func (n *NS) ReadSysctl(key string) (value string, err error) {
	err = n.withSysctl(key, func(f *os.File) (stale bool, err error) {
		if value, err = preadSysctl(f); err != nil {
			return true, fmt.Errorf("reading sysctl %s: %w", key, err)
		}
		return false, nil
	})
	return value, err
}

// withSysctl runs use on key's open file (sysctlFile). When use reports
// the file stale (its setting went away) and the file was kept from an
// earlier use, the file is opened again and use runs once more.
func (n *NS) withSysctl(key string, use func(f *os.File) (stale bool, err error)) error {
	for {
		f, fresh, err := n.sysctlFile(key)
		if err != nil {
			return err
		}
		stale, err := use(f)
		if !stale || fresh {
			return err
		}
		n.dropSysctl(key, f)
	}
}

// sysctlFile returns the open file of key, opening it inside n (Do) and
// keeping it if it is not open yet (fresh).
func (n *NS) sysctlFile(key string) (f *os.File, fresh bool, err error) {
	n.smu.Lock()
	f = n.sysctls[key]
	n.smu.Unlock()
	if f != nil {
		return f, false, nil
	}
	err = n.Do(func() error {
		// For reading and, where the setting can be written, writing.
		rel := strings.TrimPrefix(sysctlPath(key), "/proc/sys/")
		if f, err = OpenProcSys(rel, os.O_RDWR); err != nil {
			f, err = OpenProcSys(rel, os.O_RDONLY)
		}
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading sysctl %s: %w", key, err)
	}
	if f = n.keepSysctl(key, f); f == nil {
		return nil, false, fmt.Errorf("reading sysctl %s: namespace %s closed", key, n)
	}
	return f, true, nil
}

// keepSysctl keeps f as key's file and returns the file kept: f, or the
// one another caller kept meanwhile (f is closed then); nil once n is
// closed.
func (n *NS) keepSysctl(key string, f *os.File) *os.File {
	n.smu.Lock()
	defer n.smu.Unlock()
	if n.sysClosed {
		f.Close()
		return nil
	}
	if kept := n.sysctls[key]; kept != nil {
		f.Close()
		return kept
	}
	if n.sysctls == nil {
		n.sysctls = map[string]*os.File{}
	}
	n.sysctls[key] = f
	return f
}

// dropSysctl closes f, key's file, which failed.
func (n *NS) dropSysctl(key string, f *os.File) {
	n.smu.Lock()
	defer n.smu.Unlock()
	if n.sysctls[key] == f {
		delete(n.sysctls, key)
		f.Close()
	}
}

// preadSysctl reads a sysctl file from its start.
func preadSysctl(f *os.File) (string, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// pidOf returns PID for a path /proc/PID/ns/net, else 0.
func pidOf(path string) int {
	rest, ok := strings.CutPrefix(path, "/proc/")
	if !ok {
		return 0
	}
	pid, ok := strings.CutSuffix(rest, "/ns/net")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
