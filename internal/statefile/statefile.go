package statefile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/internal/errkind"
)

// MaxSize is the largest state file Read accepts.
const MaxSize = 1 << 20

// tmpPrefix starts the names of files being written; a crash can leave them
// behind, and their owners skip and remove them.
const tmpPrefix = ".tmp-"

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

// Mkdir creates dir (mode 0700) if missing and refuses anything at that
// path that is not a real directory (a symlink, for instance). Its parent
// must exist (an error matching fs.ErrNotExist otherwise).
func Mkdir(dir string) error {
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

// Write replaces path with data atomically: readers see the old file or the
// new one, never a part, also if the process dies in between.
func Write(path string, data []byte) error {
	if err := Replace(path, data, true); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Replace is Write without the error's context, and with the flush to disk
// (fsync) only when sync is set: a hint that may be lost in a crash needs
// none.
func Replace(path string, data []byte, sync bool) error {
	tmp, err := WriteTemp(filepath.Dir(path), data, sync)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// WriteTemp writes data to a new temporary file (mode 0600) in dir, flushed
// to disk when sync is set, and returns its path; the caller renames, links
// or removes it. It uses the system calls directly: an os.File costs
// several more per file.
func WriteTemp(dir string, data []byte, sync bool) (path string, err error) {
	var fd int
	for {
		path = filepath.Join(dir, tmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
		fd, err = openNoEINTR(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != unix.EEXIST {
			break
		}
	}
	if err != nil {
		return "", &fs.PathError{Op: "create", Path: path, Err: err}
	}
	op := "write"
	for rest := data; len(rest) > 0; {
		n, werr := unix.Write(fd, rest)
		if werr == unix.EINTR {
			continue
		}
		if werr != nil {
			err = werr
			break
		}
		rest = rest[n:]
	}
	if err == nil && sync {
		op, err = "fsync", unix.Fsync(fd)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		op, err = "close", cerr
	}
	if err != nil {
		unix.Unlink(path)
		return "", &fs.PathError{Op: op, Path: path, Err: err}
	}
	return path, nil
}

// Create writes path only if it does not exist yet (errkind.Exists if it
// does): a claim that two writers cannot both win. The file appears whole or
// not at all: it is written aside and linked into place.
func Create(path string, data []byte) error {
	tmp, err := WriteTemp(filepath.Dir(path), data, true)
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
	b, err := ReadFile(path, MaxSize)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading %s: %w", path, errkind.NotFound)
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("reading %s: is a symlink, refusing to follow it: %w", path, errkind.Invalid)
	case errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("reading %s: larger than %d bytes: %w", path, MaxSize, errkind.Invalid)
	}
	return nil, fmt.Errorf("reading %s: %w", path, err)
}

var errTooLarge = errors.New("file too large")

// ReadFile reads a file of at most max bytes without following a symlink at
// path, with the system calls directly. Errors are *fs.PathError (a missing
// file matches fs.ErrNotExist, a symlink unix.ELOOP).
func ReadFile(path string, max int) ([]byte, error) {
	fd, err := openNoEINTR(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			if len(b) > max {
				return nil, &fs.PathError{Op: "read", Path: path, Err: errTooLarge}
			}
			b = slices.Grow(b, len(b))
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			if len(b) > max {
				return nil, &fs.PathError{Op: "read", Path: path, Err: errTooLarge}
			}
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// Open opens path with the system call directly, retrying on EINTR.
func Open(path string, flags int, mode uint32) (int, error) { return openNoEINTR(path, flags, mode) }

func openNoEINTR(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// Remove deletes path; a missing file is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// IsTemp reports whether a file name is one of WriteTemp's temporary files.
func IsTemp(name string) bool { return strings.HasPrefix(name, tmpPrefix) }

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
	for {
		if err = Flock(ctx, int(f.Fd()), shared); err != nil {
			break
		}
		if sameFile(f, path) {
			l.f = f
			return l, nil
		}
		// The holder before us removed the lock file (RemoveLock): our
		// flock is on a file nobody else will open. Start over on the file
		// at path now.
		f.Close()
		if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600); err != nil {
			break
		}
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

// TryAcquire takes the exclusive lock on path without waiting; ok is false
// when someone holds it (another process, or another Lock in this one).
func TryAcquire(path string) (l *Lock, ok bool, err error) {
	mu := mutexFor(path)
	if !mu.TryLock() {
		return nil, false, nil
	}
	l = &Lock{mu: mu}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		mu.Unlock()
		return nil, false, fmt.Errorf("locking %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		mu.Unlock()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("locking %s: %w", path, err)
	}
	l.f = f
	return l, true, nil
}

// Held is the Lock of a file this process holds a flock on already (one
// handed over by its parent); Release closes it. It does not take the
// in-process mutex: nothing else in this process has the file.
func Held(f *os.File) *Lock {
	mu := new(sync.RWMutex)
	mu.Lock() // as Release unlocks it
	return &Lock{f: f, mu: mu}
}

// File is the locked file, to hand the lock to a child process (as one of
// its ExtraFiles): a flock is held while any copy of its descriptor is
// open, so the lock passes to the child with no moment free.
func (l *Lock) File() *os.File { return l.f }

// Flock takes a flock on fd, shared or exclusive. When ctx can be
// cancelled, it polls with LOCK_NB and short sleeps, so waiting honours ctx;
// otherwise it blocks in the kernel.
func Flock(ctx context.Context, fd int, shared bool) error {
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	if ctx.Done() == nil {
		for {
			err := unix.Flock(fd, how)
			if err != unix.EINTR {
				return err
			}
		}
	}
	delay := 50 * time.Microsecond
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
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
		// At most 1 ms: the locks are held for a few file operations, and a
		// longer sleep mostly outlasts the holder (with 4 processes
		// attaching at once, a 10 ms cap left each waiting longer than
		// the work it waited for).
		delay = min(2*delay, time.Millisecond)
	}
}

// Stamp tells whether a file changed: its inode and modification time.
type Stamp struct {
	ino   uint64
	mtime time.Time
}

// StampOf returns path's stamp; ok is false when it cannot be read.
func StampOf(path string) (Stamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{}, false
	}
	st, _ := fi.Sys().(interface{ Ino() uint64 })
	var ino uint64
	if st != nil {
		ino = st.Ino()
	}
	return Stamp{ino: ino, mtime: fi.ModTime()}, true
}
