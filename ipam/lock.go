package ipam

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/internal/statefile"
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
		fd, err := statefile.Open(path, flags, 0)
		if err == unix.ENOENT {
			if !create {
				return -1, errNoNetwork
			}
			// The lock file is made last, so that where it exists, so do the
			// directories. ReleaseNetwork removes it last but the directory.
			if err := statefile.Mkdir(dir); err != nil {
				return -1, err
			}
			if err := statefile.Mkdir(filepath.Join(dir, keysDir)); errors.Is(err, fs.ErrNotExist) {
				continue // ReleaseNetwork removed the directory under us
			} else if err != nil {
				return -1, err
			}
			fd, err = statefile.Open(path, flags|unix.O_CREAT, 0o600)
			if err == unix.ENOENT {
				continue // ReleaseNetwork removed the directory under us
			}
		}
		if err != nil {
			return -1, fmt.Errorf("opening lock file %s: %w", path, err)
		}
		if err := statefile.Flock(ctx, fd, false); err != nil {
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
