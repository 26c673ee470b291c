package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Names inside a network's directory. Address files are named by the address
// itself, which never collides with these.
const (
	lockName     = "lock"
	keysDir      = "keys"
	cursorPrefix = "last_reserved_" // + "ipv4" or "ipv6"
	tmpPrefix    = ".tmp-"
	maxFileSize  = 64 << 10
)

// addrRecord is the content of an address file: who holds the address.
type addrRecord struct {
	Key
	Created time.Time `json:"created"`
}

// keyRecord is the content of a key file: the addresses a key holds.
type keyRecord struct {
	Key
	Addrs   []netip.Prefix `json:"addrs"`
	Created time.Time      `json:"created"`
}

func (s *Store) netDir(network string) string { return filepath.Join(s.dir, network) }

func addrPath(dir string, a netip.Addr) string { return filepath.Join(dir, a.String()) }

func keyPath(dir string, k Key) string { return filepath.Join(dir, keysDir, k.fileName()) }

func cursorPath(dir string, a netip.Addr) string {
	if a.Is4() {
		return filepath.Join(dir, cursorPrefix+"ipv4")
	}
	return filepath.Join(dir, cursorPrefix+"ipv6")
}

// readFile reads a small file without following a symlink at path. It uses
// the system calls directly: an os.File costs several more per open.
func readFile(path string) ([]byte, error) {
	fd, err := openNoEINTR(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			if len(b) > maxFileSize {
				return nil, fmt.Errorf("reading %s: file larger than %d bytes", path, maxFileSize)
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
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

func openNoEINTR(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readJSON reads the record at path into v. A missing file gives an error
// matching fs.ErrNotExist; a malformed one or a symlink, errCorrupt.
func readJSON(path string, v any) error {
	b, err := readFile(path)
	if errors.Is(err, unix.ELOOP) {
		// A symlink where a record should be is junk, never followed.
		return fmt.Errorf("reading %s: %w (a symbolic link)", path, errCorrupt)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding %s: %w (%v)", path, errCorrupt, err)
	}
	return nil
}

var errCorrupt = errors.New("corrupt record")

// writeTemp writes data to a new temporary file (mode 0600) in dir, flushed to
// disk when sync is set, and returns its path. The caller renames, links or
// removes it.
func writeTemp(dir string, data []byte, sync bool) (path string, err error) {
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

// replaceFile atomically replaces the file at path with data: a reader sees
// the old content or the new, never a part.
func replaceFile(path string, data []byte, sync bool) error {
	tmp, err := writeTemp(filepath.Dir(path), data, sync)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// readCursor returns the last address handed out in dir for a's family, or
// the zero Addr when there is none (or the file is unreadable: it is a hint).
func readCursor(dir string, a netip.Addr) netip.Addr {
	b, err := readFile(cursorPath(dir, a))
	if err != nil {
		return netip.Addr{}
	}
	c, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		return netip.Addr{}
	}
	return c
}

// isTemp reports whether name is a temporary file that a crash may have left.
func isTemp(name string) bool { return strings.HasPrefix(name, tmpPrefix) }

// removeIfExists removes path; a missing file is success.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
