package sandnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
)

// stateVersion is the layout of the state dir this code reads and writes.
const stateVersion = 1

// ErrStateVersion is returned for a state dir or record written by a newer
// sandnet; it is never overwritten.
var ErrStateVersion = errors.New("state written by a newer sandnet")

func checkVersion(dir string) error {
	path := filepath.Join(dir, "version")
	b, err := statefile.Read(path)
	if errors.Is(err, ErrNotFound) {
		if err := statefile.Create(path, []byte(strconv.Itoa(stateVersion)+"\n")); err != nil && !errors.Is(err, ErrExists) {
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("state dir %s: version file is corrupt (%q): %w", dir, b, ErrInvalid)
	}
	if v > stateVersion {
		return fmt.Errorf("state dir %s: layout version %d, this sandnet knows %d: %w", dir, v, stateVersion, ErrStateVersion)
	}
	return nil
}

// hostNSRecord says which host namespace a state dir serves (file
// "hostns"): records, leases and rules of one namespace mean nothing in
// another, and two namespaces sharing one state dir would each tear down
// what the other made.
type hostNSRecord struct {
	Inode uint64 `json:"inode"`
	Path  string `json:"path"`
}

// checkHostNS records the namespace ns in state dir dir, or checks that the
// dir serves it. A dir that served another namespace is refused
// (ErrInvalid) while that namespace may still exist; once it is gone (its
// pinned file, /run/netns/NAME or /proc/PID/ns/net, no longer names it),
// its state is stale and the dir is taken over.
func checkHostNS(dir string, ns *netns.NS, log *slog.Logger) error {
	path := filepath.Join(dir, "hostns")
	me := hostNSRecord{Inode: ns.Inode(), Path: ns.Path()}
	b, err := statefile.Read(path)
	if errors.Is(err, ErrNotFound) {
		mine, _ := jsonBytes(me)
		if err := statefile.Create(path, mine); !errors.Is(err, ErrExists) {
			return err
		}
		b, err = statefile.Read(path) // another process recorded it first
	}
	if err != nil {
		return err
	}
	var rec hostNSRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("state dir %s: hostns file is corrupt: %w", dir, ErrInvalid)
	}
	if rec.Inode == me.Inode {
		return nil
	}
	unknowable := strings.HasPrefix(rec.Path, "/proc/self/") || strings.HasPrefix(rec.Path, "/proc/thread-self/") || rec.Path == ""
	if unknowable || netns.Alive(rec.Path, rec.Inode) {
		return fmt.Errorf("state dir %s serves host namespace %s (inode %d), not %s (inode %d): give each host namespace its own state dir: %w",
			dir, rec.Path, rec.Inode, me.Path, me.Inode, ErrInvalid)
	}
	log.Info("taking over a state dir whose host namespace is gone", "dir", dir, "was", rec.Path, "inode", rec.Inode)
	return statefile.WriteJSON(path, me)
}

// networkRecord is a network's state file.
type networkRecord struct {
	Version int       `json:"version"`
	Network Network   `json:"network"`
	Created time.Time `json:"created"`
	// Implicit networks were created by Attach, not CreateNetwork; GC removes
	// them once they have no endpoint.
	Implicit bool `json:"implicit,omitempty"`
	// OwnsBridge: sandnet created the bridge (or VXLAN, VLAN) and removes it
	// with the network; an adopted one stays.
	OwnsBridge bool `json:"ownsBridge,omitempty"`
	// HostChanges lists host-wide settings sandnet changed for the network
	// (e.g. "net.ipv4.ip_forward=1"); they are reported, never reverted.
	HostChanges []string `json:"hostChanges,omitempty"`
}

// endpointState says how far an attach got.
type endpointState string

const (
	stateAttaching endpointState = "attaching" // claimed; an attach is (or was) in progress
	stateAttached  endpointState = "attached"
)

// endpointRecord is an endpoint's state file.
type endpointRecord struct {
	Version  int           `json:"version"`
	State    endpointState `json:"state"`
	PID      int           `json:"pid"`
	Endpoint Endpoint      `json:"endpoint"`
}

// stale says why record r no longer stands for a working endpoint: its
// attach never finished, or its sandbox namespace is gone; "" if neither.
// Judged under the network's exclusive lock, an unfinished attach is one
// that died.
func (r *endpointRecord) stale() string {
	switch {
	case r.State != stateAttached:
		return "attach did not finish"
	case !netns.Alive(r.Endpoint.NetNS, r.Endpoint.NetNSInode):
		return "sandbox namespace is gone"
	}
	return ""
}

func (h *Host) networkPath(name string) string {
	return filepath.Join(h.dir, "networks", name+".json")
}

func (h *Host) networkLockPath(name string) string {
	return filepath.Join(h.dir, "networks", name+".lock")
}

func (h *Host) networksLockPath() string { return filepath.Join(h.dir, "networks.lock") }

func (h *Host) endpointDir(network string) string {
	return filepath.Join(h.dir, "endpoints", network)
}

func (h *Host) endpointPath(network, id string) string {
	return filepath.Join(h.endpointDir(network), id+".json")
}

func readRecord[T any](path string, version func(*T) int) (*T, error) {
	b, err := statefile.Read(path)
	if err != nil {
		return nil, err
	}
	return decodeRecord(path, b, version)
}

func decodeRecord[T any](path string, b []byte, version func(*T) int) (*T, error) {
	v := new(T)
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %v: %w", path, err, ErrInvalid)
	}
	switch n := version(v); {
	case n > stateVersion:
		return nil, fmt.Errorf("state file %s: version %d, this sandnet knows %d: %w", path, n, stateVersion, ErrStateVersion)
	case n < 1:
		return nil, fmt.Errorf("state file %s has no version: %w", path, ErrInvalid)
	}
	return v, nil
}

func (h *Host) readNetwork(name string) (*networkRecord, error) {
	return readRecord(h.networkPath(name), func(r *networkRecord) int { return r.Version })
}

func (h *Host) readEndpoint(network, id string) (*endpointRecord, error) {
	return readRecord(h.endpointPath(network, id), func(r *endpointRecord) int { return r.Version })
}

// listEndpointRecords returns the records of a network's endpoints. Files
// that cannot be read are returned as errors next to the good records.
func (h *Host) listEndpointRecords(network string) ([]*endpointRecord, error) {
	entries, err := os.ReadDir(h.endpointDir(network))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing endpoints of %s: %w", network, err)
	}
	var (
		recs []*endpointRecord
		errs []error
	)
	for _, e := range entries {
		name := e.Name()
		if statefile.IsTemp(name) || !strings.HasSuffix(name, ".json") {
			continue
		}
		r, err := h.readEndpoint(network, strings.TrimSuffix(name, ".json"))
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, r)
	}
	return recs, errors.Join(errs...)
}

// anyEndpointRecord reports whether pred holds for one of a network's
// endpoint records, reading them one by one until it does. Unreadable
// records are skipped.
func (h *Host) anyEndpointRecord(network string, pred func(*endpointRecord) bool) bool {
	entries, _ := os.ReadDir(h.endpointDir(network))
	for _, e := range entries {
		name := e.Name()
		if statefile.IsTemp(name) || !strings.HasSuffix(name, ".json") {
			continue
		}
		if r, err := h.readEndpoint(network, strings.TrimSuffix(name, ".json")); err == nil && pred(r) {
			return true
		}
	}
	return false
}

func (h *Host) listNetworkRecords() ([]*networkRecord, error) {
	entries, err := os.ReadDir(filepath.Join(h.dir, "networks"))
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	var (
		recs []*networkRecord
		errs []error
	)
	for _, e := range entries {
		name := e.Name()
		if statefile.IsTemp(name) || !strings.HasSuffix(name, ".json") {
			continue
		}
		r, err := h.readNetwork(strings.TrimSuffix(name, ".json"))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, r)
	}
	return recs, errors.Join(errs...)
}
