package ipam

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// errNoNetwork reports, inside the package, that a network's directory does not exist.
var errNoNetwork = errors.New("network directory does not exist")

// lockNetwork takes the network's in-process lock, then an exclusive flock on
// <dir>/<network>/lock, and returns the function that releases both.
//
// With create, the network's directories and lock file are made if missing;
// without, errNoNetwork says that the network has no directory.
//
// The in-process lock (a one-slot channel, so that waiting honours ctx) keeps
// goroutines of this Store out of each other's way; flock, taken on a fresh
// open file description each time, keeps processes and other Stores out.
func (s *Store) lockNetwork(ctx context.Context, network string, create bool) (unlock func(), err error) {
	sem := s.sem(network)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	fd, err := s.flockNetwork(ctx, network, create)
	if err != nil {
		<-sem
		return nil, err
	}
	return func() {
		unix.Close(fd) // closing the only descriptor drops the flock
		<-sem
	}, nil
}

func (s *Store) sem(network string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.locks[network]
	if !ok {
		c = make(chan struct{}, 1)
		s.locks[network] = c
	}
	return c
}

// flockNetwork opens the network's lock file and flocks it; it returns the
// file descriptor, which the caller closes to unlock.
func (s *Store) flockNetwork(ctx context.Context, network string, create bool) (int, error) {
	dir := s.netDir(network)
	path := filepath.Join(dir, lockName)
	const flags = unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC
	for {
		if err := ctx.Err(); err != nil {
			return -1, context.Cause(ctx)
		}
		fd, err := openNoEINTR(path, flags, 0)
		if err == unix.ENOENT {
			if !create {
				return -1, errNoNetwork
			}
			// The lock file is made last, so that where it exists, so do the
			// directories. ReleaseNetwork removes it last but the directory.
			if err := makeDir(dir); err != nil {
				return -1, err
			}
			if err := makeDir(filepath.Join(dir, keysDir)); errors.Is(err, fs.ErrNotExist) {
				continue // ReleaseNetwork removed the directory under us
			} else if err != nil {
				return -1, err
			}
			fd, err = openNoEINTR(path, flags|unix.O_CREAT, 0o600)
			if err == unix.ENOENT {
				continue // ReleaseNetwork removed the directory under us
			}
		}
		if err != nil {
			return -1, fmt.Errorf("opening lock file %s: %w", path, err)
		}
		if err := flock(ctx, fd); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("locking %s: %w", path, err)
		}
		// ReleaseNetwork unlinks the lock file while holding it: if that happened
		// while we waited, our lock is on a dead file. Start again.
		same, err := sameFile(fd, path)
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("checking lock file %s: %w", path, err)
		}
		if same {
			return fd, nil
		}
		unix.Close(fd)
	}
}

// flock takes an exclusive lock on fd. When ctx can be cancelled, it polls
// with LOCK_NB and short sleeps; otherwise it blocks in the kernel.
func flock(ctx context.Context, fd int) error {
	if ctx.Done() == nil {
		for {
			err := unix.Flock(fd, unix.LOCK_EX)
			if err != unix.EINTR {
				return err
			}
		}
	}
	delay := 100 * time.Microsecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// sameFile reports whether the open file fd is still the file at path.
func sameFile(fd int, path string) (bool, error) {
	var fst, pst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return false, err
	}
	if err := unix.Lstat(path, &pst); err == unix.ENOENT {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return fst.Dev == pst.Dev && fst.Ino == pst.Ino, nil
}

// makeDir creates dir (mode 0700) if missing and refuses anything at that path
// that is not a real directory (a symlink, for instance).
func makeDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating directory %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("checking directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("checking directory %s: not a directory (mode %s)", dir, fi.Mode().Type())
	}
	return nil
}
