// Package statefile writes and reads sandnet's state files safely: atomic
// replacement (write a temporary file, fsync, rename), no symlink following,
// private permissions, bounded reads, and advisory file locks that work across
// goroutines and processes.
package statefile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/internal/errkind"
)

// MaxSize is the largest state file Read accepts.
const MaxSize = 1 << 20

// tmpPrefix starts the names of files being written; a crash can leave them
// behind, and Clean removes them.
const tmpPrefix = ".tmp-"

var seq atomic.Uint64

// MkdirAll creates dir and its parents with mode 0700 and refuses a dir that
// is a symlink or is not owned by us.
func MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state dir %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("checking state dir %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("state dir %s is not a directory: %w", dir, errkind.Invalid)
	}
	if st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("state dir %s is owned by uid %d, not by us: %w", dir, st.Uid, errkind.Invalid)
	}
	return nil
}

// Write replaces path with data atomically: readers see the old file or the
// new one, never a part, also if the process dies in between.
func Write(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeTemp writes data, synced, to a new temporary file beside path.
func writeTemp(path string, data []byte) (string, error) {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, tmpPrefix+filepath.Base(path)+"."+strconv.Itoa(os.Getpid())+"."+strconv.FormatUint(seq.Add(1), 10))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// Create writes path only if it does not exist yet (errkind.Exists if it
// does): a claim that two writers cannot both win. The file appears whole or
// not at all: it is written aside and linked into place.
func Create(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating %s: %w", path, errkind.Exists)
		}
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return nil
}

// WriteJSON is Write of v encoded as indented JSON.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return Write(path, append(b, '\n'))
}

// Read returns the content of path without following a symlink, refusing
// files over MaxSize. A missing file is errkind.NotFound.
func Read(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading %s: %w", path, errkind.NotFound)
		}
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("reading %s: is a symlink, refusing to follow it: %w", path, errkind.Invalid)
		}
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("reading %s: larger than %d bytes: %w", path, MaxSize, errkind.Invalid)
	}
	return b, nil
}

// Remove deletes path; a missing file is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// IsTemp reports whether a file name is one of Write's temporary files.
func IsTemp(name string) bool {
	return len(name) >= len(tmpPrefix) && name[:len(tmpPrefix)] == tmpPrefix
}

// Lock is an advisory lock on a file, exclusive or shared, that holds across
// processes (flock) and across goroutines of one process (a RWMutex per path:
// flock alone would let two goroutines that open the file separately
// exclude each other correctly, but costs a file descriptor each).
type Lock struct {
	f       *os.File
	mu      *sync.RWMutex
	shared  bool
	release sync.Once
}

var (
	mutexesMu sync.Mutex
	mutexes   = map[string]*sync.RWMutex{}
)

func mutexFor(path string) *sync.RWMutex {
	mutexesMu.Lock()
	defer mutexesMu.Unlock()
	m := mutexes[path]
	if m == nil {
		m = new(sync.RWMutex)
		mutexes[path] = m
	}
	return m
}

// Acquire takes the lock on path (created 0600 if missing), waiting until it
// is free or ctx ends.
func Acquire(ctx context.Context, path string, shared bool) (*Lock, error) {
	mu := mutexFor(path)
	if shared {
		mu.RLock()
	} else {
		mu.Lock()
	}
	l := &Lock{mu: mu, shared: shared}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		l.unlockMutex()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	for delay := 50 * time.Microsecond; ; {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil && !sameFile(f, path) {
			// The holder before us removed the lock file (RemoveLock):
			// our flock is on a file nobody else will open. Start over on
			// the file at path now.
			f.Close()
			if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600); err != nil {
				break
			}
			continue
		}
		if err == nil {
			l.f = f
			return l, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(delay):
			delay = min(delay*2, 10*time.Millisecond)
			continue
		}
		break
	}
	if f != nil {
		f.Close()
	}
	l.unlockMutex()
	return nil, fmt.Errorf("locking %s: %w", path, err)
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Lstat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// RemoveLock removes the lock file of l, which the caller holds
// exclusively, when what it guards is gone for good (a removed network):
// lock files do not pile up. Whoever waits on the old file finds it
// removed once it gets the flock, and takes the lock on a new file at the
// same path instead (Acquire checks), so two holders never coexist.
func (l *Lock) RemoveLock(path string) error {
	if l == nil || l.shared || !sameFile(l.f, path) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing lock %s: %w", path, err)
	}
	return nil
}

func (l *Lock) unlockMutex() {
	if l.shared {
		l.mu.RUnlock()
	} else {
		l.mu.Unlock()
	}
}

// Release drops the lock; calling it again does nothing.
func (l *Lock) Release() {
	if l == nil {
		return
	}
	l.release.Do(func() {
		l.f.Close() // closing the descriptor drops the flock
		l.unlockMutex()
	})
}
