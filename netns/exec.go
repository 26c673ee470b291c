package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// EtcDir is where `ip netns exec NAME` finds the files it bind-mounts over
// /etc for namespace NAME (sandnet writes a sandbox's resolv.conf and hosts
// there), and where [NS.Start] finds them too.
const EtcDir = "/etc/netns"

// Start starts cmd inside n the way `ip netns exec NAME` runs a program,
// without running any other program: cmd gets n as its network namespace
// and a private mount namespace in which
//   - every file of /etc/netns/NAME (for a namespace opened by name) is
//     bind-mounted over the file of the same name in /etc, so the C
//     library, getent, ping and curl read the sandbox's resolv.conf and
//     hosts, and resolve its network's names;
//   - /sys is a fresh sysfs that shows n's network devices
//     (/sys/class/net).
//
// The host's mounts propagate into cmd's mount namespace, none of cmd's
// propagate out, and nothing changes for the caller. Wait for cmd as usual.
// A target missing in /etc is skipped (ip netns exec warns about it).
//
// Start is the sibling of [NS.Command], which runs nsenter --net and so
// leaves /etc and /sys as the caller sees them. It forks from a fresh OS
// thread that has entered n and the new mount namespace; that thread is
// never reused (it ends with its goroutine). Needs root.
//
// Equivalent to: ip netns exec NAME CMD ARGS...
func (n *NS) Start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: this thread's mount namespace and filesystem
		// attributes stay changed, so it must die with the goroutine.
		runtime.LockOSThread()
		errc <- func() error {
			if err := n.enterPrivateMounts(); err != nil {
				return fmt.Errorf("preparing to run %s in %s: %w", cmd.Path, n, err)
			}
			return cmd.Start()
		}()
	}()
	return <-errc
}

// enterPrivateMounts moves the calling (locked) thread into a new mount
// namespace and into n, then mounts what ip netns exec mounts.
func (n *NS) enterPrivateMounts() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("making a private mount namespace: %w", err)
	}
	// Mounts made here must not propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making / a slave mount: %w", err)
	}
	if err := unix.Setns(n.Fd(), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering namespace %s: %w", n, err)
	}
	// A sysfs mounted from inside n shows n's devices.
	var flags uintptr
	var st unix.Statfs_t
	if unix.Statfs("/sys", &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
		flags = unix.MS_RDONLY
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmounting /sys: %w", err)
	}
	if err := unix.Mount(n.name, "/sys", "sysfs", flags, ""); err != nil {
		return fmt.Errorf("mounting /sys for %s: %w", n, err)
	}
	if n.name == "" {
		return nil
	}
	dir := filepath.Join(EtcDir, n.name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		dst := filepath.Join("/etc", e.Name())
		if _, err := os.Stat(dst); err != nil {
			continue
		}
		if err := unix.Mount(filepath.Join(dir, e.Name()), dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting %s over %s: %w", filepath.Join(dir, e.Name()), dst, err)
		}
	}
	return nil
}
