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
// The first use of a key enters n (Do) to open its file, which is then
// kept open: a /proc/sys/net file acts in the namespace it was opened in,
// from whichever thread reads or writes it, so later uses need no switch.
// A file whose setting went away (a device deleted, and maybe made again)
// fails, and is opened again.
//
// Equivalent to: sysctl -w KEY=VALUE (inside n)
func (n *NS) Sysctl(key, value string) (changed bool, err error) {
	if f := n.sysctlFile(key); f != nil {
		cur, err := preadSysctl(f)
		if err == nil && cur == value {
			return false, nil
		}
		if err == nil {
			if _, err = f.WriteAt([]byte(value), 0); err == nil {
				return true, nil
			}
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBADF) {
				return false, fmt.Errorf("writing sysctl %s=%s: %w", key, value, err)
			}
		}
		n.dropSysctl(key, f)
	}
	err = n.Do(func() error {
		changed, err = writeSysctl(key, value)
		if err == nil {
			n.keepSysctl(key)
		}
		return err
	})
	return changed, err
}

// ReadSysctl reads a sysctl inside n, through a file kept open as Sysctl
// does.
func (n *NS) ReadSysctl(key string) (value string, err error) {
	if f := n.sysctlFile(key); f != nil {
		if v, err := preadSysctl(f); err == nil {
			return v, nil
		}
		n.dropSysctl(key, f)
	}
	err = n.Do(func() error {
		value, err = readSysctl(key)
		if err == nil {
			n.keepSysctl(key)
		}
		return err
	})
	return value, err
}

// sysctlFile returns the open file of key, or nil.
func (n *NS) sysctlFile(key string) *os.File {
	n.smu.Lock()
	defer n.smu.Unlock()
	return n.sysctls[key]
}

// keepSysctl opens key's file, for reading and, where the setting can be
// written, writing, and keeps it. It runs inside n (in Do).
func (n *NS) keepSysctl(key string) {
	f, err := os.OpenFile(sysctlPath(key), os.O_RDWR, 0)
	if err != nil {
		if f, err = os.Open(sysctlPath(key)); err != nil {
			return
		}
	}
	n.smu.Lock()
	defer n.smu.Unlock()
	if n.sysClosed || n.sysctls[key] != nil {
		f.Close()
		return
	}
	if n.sysctls == nil {
		n.sysctls = map[string]*os.File{}
	}
	n.sysctls[key] = f
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
