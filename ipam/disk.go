package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/internal/statefile"
)

// Names inside a network's directory. Address files are named by the address
// itself, which never collides with these.
const (
	lockName     = "lock"
	keysDir      = "keys"
	cursorPrefix = "last_reserved_" // + "ipv4" or "ipv6"
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

// readJSON reads the record at path into v. A missing file gives an error
// matching fs.ErrNotExist; a malformed one or a symlink, errCorrupt.
func readJSON(path string, v any) error {
	b, err := statefile.ReadFile(path, maxFileSize)
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

// readCursor returns the last address handed out in dir for a's family, or
// the zero Addr when there is none (or the file is unreadable: it is a hint).
func readCursor(dir string, a netip.Addr) netip.Addr {
	b, err := statefile.ReadFile(cursorPath(dir, a), maxFileSize)
	if err != nil {
		return netip.Addr{}
	}
	c, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		return netip.Addr{}
	}
	return c
}

// removeIfExists removes path; a missing file is success.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
