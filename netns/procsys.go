package netns

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// OpenProcSys opens rel, a path under /proc/sys ("net/ipv6/conf"), with
// flag (os.O_RDONLY, os.O_RDWR), as the calling thread's network namespace
// sees it: call it inside the namespace (Do). Files opened from a
// directory it returns (openat) are that namespace's settings too.
//
// In /proc, every namespace that looked a path up keeps a cached entry for
// each component under /proc/sys/net ("ipv4", "ipv6", "bridge"), all in
// one hash chain, which the kernel walks comparing each entry's namespace
// with the looker's. A namespace's first lookup walks it all (0.3-0.6 ms
// with a thousand namespaces, 20 µs with few), and walks it again if any
// file was renamed anywhere meanwhile, which an attach does several times
// (its state files); every new sandbox's first lookup is a first. So a
// process that has made more than a few lookups makes them in a procfs
// instance of its own, mounted nowhere (fsopen, fsmount), and made anew
// after every 64 lookups, so that its chains stay short. Letting an
// instance go makes the kernel wait for a grace period, which a timer does
// a second later, on its own thread. The first lookups go to /proc: a
// short-lived process (the CNI plugin) would pay more for an instance than
// it saves. Where procfs cannot be mounted so (a kernel before 5.2, a
// container that may not mount), /proc/sys is used.
func OpenProcSys(rel string, flag int) (*os.File, error) {
	if dir := privateProc.get(); dir != nil {
		fd, err := unix.Openat(int(dir.Fd()), rel, flag|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: "/proc/sys/" + rel, Err: err}
		}
		return os.NewFile(uintptr(fd), "/proc/sys/"+rel), nil
	}
	return os.OpenFile("/proc/sys/"+rel, flag, 0)
}

const (
	// procFirst lookups of a process go to /proc.
	procFirst = 8
	// procLookups is how many lookups an instance serves before a new one
	// is made: enough to spread the cost of making one and letting it go,
	// few enough that its chains stay short.
	procLookups = 64
)

// privateProc is the process's procfs instance, see OpenProcSys.
var privateProc procInstance

type procInstance struct {
	mu     sync.Mutex
	sys    *os.File // its sys/ directory; nil before the first
	uses   int      // lookups made in it (in /proc, before the first)
	failed bool     // making one failed: /proc is used from then on
}

// get returns the instance's sys/ directory, made (anew) if need be; nil
// for /proc.
func (p *procInstance) get() *os.File {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed {
		return nil
	}
	if p.sys == nil && p.uses < procFirst {
		p.uses++
		return nil
	}
	if p.sys == nil || p.uses >= procLookups {
		sys, err := mountProcSys()
		if err != nil {
			p.failed = true
			return nil
		}
		if old := p.sys; old != nil {
			// Files opened from it keep it alive; by then they are closed,
			// and this lets go of the last reference.
			time.AfterFunc(time.Second, func() { old.Close() })
		}
		p.sys, p.uses = sys, 0
	}
	p.uses++
	return p.sys
}

// mountProcSys mounts a new procfs instance nowhere (fsopen, fsmount) and
// opens its sys/, which keeps it alive until closed.
//
// Equivalent to: mount -t proc proc DIR (a mount no one else sees)
func mountProcSys() (*os.File, error) {
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return nil, err
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(mnt)
	fd, err := unix.Openat(mnt, "sys", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/proc/sys"), nil
}
