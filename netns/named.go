package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
)

// Create makes a new network namespace pinned as /run/netns/NAME and opens it.
// The calling thread's namespace does not change.
//
// Equivalent to: ip netns add NAME
func Create(ctx context.Context, name string) (*NS, error) {
	if err := checkNewName(name); err != nil {
		return nil, err
	}
	explain.Say(ctx, "ip netns add %s", name)
	if err := ensureDir(); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	path := filepath.Join(Dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("creating namespace %s: %w", name, ErrExists)
		}
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	f.Close()
	if err := onFreshThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting onto %s: %w", path, err)
		}
		return nil
	}); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	ns, err := OpenName(name)
	if err != nil {
		Delete(context.WithoutCancel(ctx), name)
		return nil, err
	}
	return ns, nil
}

// Delete unpins /run/netns/NAME. The namespace goes away with its last user.
// Deleting a name that does not exist is not an error.
//
// Equivalent to: ip netns del NAME
func Delete(ctx context.Context, name string) error {
	if err := checkNewName(name); err != nil {
		return err
	}
	explain.Say(ctx, "ip netns del %s", name)
	path := filepath.Join(Dir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("deleting namespace %s: unmounting: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	return nil
}

// List returns the names pinned under /run/netns, sorted.
//
// Equivalent to: ip netns list
func List() ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// ensureDir makes /run/netns a shared mount point, as iproute2 does, so that
// namespaces pinned later are seen from other mount namespaces too.
func ensureDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		if err = unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("making %s a shared mount: %w", Dir, err)
	}
	return nil
}

// onFreshThread runs fn on a new locked OS thread and puts the thread's
// network namespace back before releasing it; fn may change it.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("saving the thread's namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine and is never reused.
			errc <- errors.Join(ferr, fmt.Errorf("switching the thread back to its namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
