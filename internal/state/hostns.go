package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
)

// hostNSRecord says which host namespace a state dir serves (file
// "hostns"): records, leases and rules of one namespace mean nothing in
// another, and two namespaces sharing one state dir would each tear down
// what the other made.
type hostNSRecord struct {
	Inode uint64 `json:"inode"`
	Path  string `json:"path"`
}

// CheckHostNS records the namespace ns in state dir dir, or checks that the
// dir serves it. A dir that served another namespace is refused
// (errkind.Invalid, the root's ErrInvalid) while that namespace may still exist; once it is gone (its
// pinned file, /run/netns/NAME or /proc/PID/ns/net, no longer names it),
// its state is stale and the dir is taken over.
func CheckHostNS(dir string, ns *netns.NS, log *slog.Logger) error {
	path := filepath.Join(dir, "hostns")
	me := hostNSRecord{Inode: ns.Inode(), Path: ns.Path()}
	b, err := statefile.Read(path)
	if errors.Is(err, errkind.NotFound) {
		mine, _ := json.Marshal(me)
		if err := statefile.Create(path, mine); !errors.Is(err, errkind.Exists) {
			return err
		}
		b, err = statefile.Read(path) // another process recorded it first
	}
	if err != nil {
		return err
	}
	var rec hostNSRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("state dir %s: hostns file is corrupt: %w", dir, errkind.Invalid)
	}
	if rec.Inode == me.Inode {
		return nil
	}
	unknowable := strings.HasPrefix(rec.Path, "/proc/self/") || strings.HasPrefix(rec.Path, "/proc/thread-self/") || rec.Path == ""
	if unknowable || netns.Alive(rec.Path, rec.Inode) {
		return fmt.Errorf("state dir %s serves host namespace %s (inode %d), not %s (inode %d): give each host namespace its own state dir: %w",
			dir, rec.Path, rec.Inode, me.Path, me.Inode, errkind.Invalid)
	}
	log.Info("taking over a state dir whose host namespace is gone", "dir", dir, "was", rec.Path, "inode", rec.Inode)
	return statefile.WriteJSON(path, me)
}
