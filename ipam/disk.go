package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
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

// readFile reads a small file without following a symlink at path.
func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("reading %s: file larger than %d bytes", path, maxFileSize)
	}
	return b, nil
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
func writeTemp(dir string, data []byte, sync bool) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
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
