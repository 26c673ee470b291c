package netns

import (
	"context"
	"fmt"
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
// Equivalent to: sysctl -w KEY=VALUE (inside n)
func (n *NS) Sysctl(key, value string) (changed bool, err error) {
	err = n.Do(func() error {
		changed, err = writeSysctl(key, value)
		return err
	})
	return changed, err
}

// ReadSysctl reads a sysctl inside n.
func (n *NS) ReadSysctl(key string) (value string, err error) {
	err = n.Do(func() error {
		value, err = readSysctl(key)
		return err
	})
	return value, err
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
