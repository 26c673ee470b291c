package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/statefile"
)

// Version is the layout of the state dir this code reads and writes.
const Version = 1

// ErrVersion is returned for a state dir or record written by a newer
// sandnet; it is never overwritten.
var ErrVersion = errors.New("state written by a newer sandnet")

// EndpointState says how far an attach got.
type EndpointState string

const (
	Attaching EndpointState = "attaching" // claimed; an attach is (or was) in progress
	Attached  EndpointState = "attached"
)

// NetworkRecord is a network's state file; N is the network's definition.
type NetworkRecord[N any] struct {
	Version int       `json:"version"`
	Network N         `json:"network"`
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

// EndpointRecord is an endpoint's state file; E is the endpoint.
type EndpointRecord[E any] struct {
	Version  int           `json:"version"`
	State    EndpointState `json:"state"`
	PID      int           `json:"pid"`
	Endpoint E             `json:"endpoint"`
}

// Store is a state directory whose records hold networks of type N and
// endpoints of type E.
type Store[N, E any] struct {
	dir   string
	ports ports
}

// Open makes the state directory dir ready (creating it, checking its
// layout version) and returns it.
func Open[N, E any](dir string) (*Store[N, E], error) {
	for _, d := range []string{dir, filepath.Join(dir, "networks"), filepath.Join(dir, "endpoints")} {
		if err := statefile.MkdirAll(d); err != nil {
			return nil, err
		}
	}
	if err := checkVersion(dir); err != nil {
		return nil, err
	}
	s := &Store[N, E]{dir: dir}
	s.ports.dir = dir
	s.ports.live = s.hasEndpoint
	return s, nil
}

func checkVersion(dir string) error {
	path := filepath.Join(dir, "version")
	b, err := statefile.Read(path)
	if errors.Is(err, errkind.NotFound) {
		if err := statefile.Create(path, []byte(strconv.Itoa(Version)+"\n")); err != nil && !errors.Is(err, errkind.Exists) {
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("state dir %s: version file is corrupt (%q): %w", dir, b, errkind.Invalid)
	}
	if v > Version {
		return fmt.Errorf("state dir %s: layout version %d, this sandnet knows %d: %w", dir, v, Version, ErrVersion)
	}
	return nil
}

// Dir is the state directory's path.
func (s *Store[N, E]) Dir() string { return s.dir }

// NetworkPath is the file of network name's record.
func (s *Store[N, E]) NetworkPath(name string) string {
	return filepath.Join(s.dir, "networks", name+".json")
}

// EndpointDir holds the endpoint records of network.
func (s *Store[N, E]) EndpointDir(network string) string {
	return filepath.Join(s.dir, "endpoints", network)
}

// EndpointPath is the file of endpoint id's record on network.
func (s *Store[N, E]) EndpointPath(network, id string) string {
	return filepath.Join(s.EndpointDir(network), id+".json")
}

// LockNetwork takes network name's own lock: shared by attaches and
// detaches, exclusive to change the network's record.
func (s *Store[N, E]) LockNetwork(ctx context.Context, name string, shared bool) (*statefile.Lock, error) {
	return statefile.Acquire(ctx, filepath.Join(s.dir, "networks", name+".lock"), shared)
}

// LockNetworks takes the lock of the set of networks (exclusive), for
// creating or removing one.
func (s *Store[N, E]) LockNetworks(ctx context.Context) (*statefile.Lock, error) {
	return statefile.Acquire(ctx, filepath.Join(s.dir, "networks.lock"), false)
}

// LockNetworkExclusive takes the networks lock, then network name's own
// lock exclusively: no attach is in flight on it until release.
func (s *Store[N, E]) LockNetworkExclusive(ctx context.Context, name string) (release func(), err error) {
	glock, err := s.LockNetworks(ctx)
	if err != nil {
		return nil, err
	}
	nlock, err := s.LockNetwork(ctx, name, false)
	if err != nil {
		glock.Release()
		return nil, err
	}
	return func() {
		// The network is gone (removed under this lock): so goes its lock
		// file, which would otherwise stay forever (see statefile.RemoveLock).
		if _, err := os.Lstat(s.NetworkPath(name)); errors.Is(err, os.ErrNotExist) {
			nlock.RemoveLock(filepath.Join(s.dir, "networks", name+".lock"))
		}
		nlock.Release()
		glock.Release()
	}, nil
}

// Read reads and decodes the versioned record at path; a missing file is
// errkind.NotFound.
func Read[T any](path string, version func(*T) int) (*T, error) {
	b, err := statefile.Read(path)
	if err != nil {
		return nil, err
	}
	return Decode(path, b, version)
}

// Decode decodes record b read from path, refusing a newer version (ErrVersion).
func Decode[T any](path string, b []byte, version func(*T) int) (*T, error) {
	v := new(T)
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %v: %w", path, err, errkind.Invalid)
	}
	switch n := version(v); {
	case n > Version:
		return nil, fmt.Errorf("state file %s: version %d, this sandnet knows %d: %w", path, n, Version, ErrVersion)
	case n < 1:
		return nil, fmt.Errorf("state file %s has no version: %w", path, errkind.Invalid)
	}
	return v, nil
}

// ReadNetwork reads network name's record.
func (s *Store[N, E]) ReadNetwork(name string) (*NetworkRecord[N], error) {
	return Read(s.NetworkPath(name), func(r *NetworkRecord[N]) int { return r.Version })
}

// WriteNetwork replaces network name's record.
func (s *Store[N, E]) WriteNetwork(name string, rec *NetworkRecord[N]) error {
	return statefile.WriteJSON(s.NetworkPath(name), rec)
}

// ReadEndpoint reads endpoint id's record on network.
func (s *Store[N, E]) ReadEndpoint(network, id string) (*EndpointRecord[E], error) {
	return Read(s.EndpointPath(network, id), func(r *EndpointRecord[E]) int { return r.Version })
}

// WriteEndpoint replaces endpoint id's record on network.
func (s *Store[N, E]) WriteEndpoint(network, id string, rec *EndpointRecord[E]) error {
	return statefile.WriteJSON(s.EndpointPath(network, id), rec)
}

// CreateEndpoint writes endpoint id's record on network only if it has none
// (errkind.Exists): a claim that two attaches cannot both win.
func (s *Store[N, E]) CreateEndpoint(network, id string, rec *EndpointRecord[E]) error {
	if err := statefile.MkdirAll(s.EndpointDir(network)); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return statefile.Create(s.EndpointPath(network, id), append(b, '\n'))
}

// RemoveEndpoint removes endpoint id's record on network; idempotent.
func (s *Store[N, E]) RemoveEndpoint(network, id string) error {
	return statefile.Remove(s.EndpointPath(network, id))
}

// RemoveNetwork removes network name's record and its endpoint directory.
func (s *Store[N, E]) RemoveNetwork(name string) error {
	return errors.Join(os.RemoveAll(s.EndpointDir(name)), statefile.Remove(s.NetworkPath(name)))
}

// RemoveEndpointTemps removes the half-written records a writer that died
// left in network's endpoint directory; the caller holds the network's
// exclusive lock, so no writer is at work there.
func (s *Store[N, E]) RemoveEndpointTemps(network string) error {
	entries, err := os.ReadDir(s.EndpointDir(network))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, e := range entries {
		if statefile.IsTemp(e.Name()) {
			errs = append(errs, statefile.Remove(filepath.Join(s.EndpointDir(network), e.Name())))
		}
	}
	return errors.Join(append(errs, err)...)
}

// hasEndpoint reports whether endpoint id has a record on network.
func (s *Store[N, E]) hasEndpoint(network, id string) bool {
	_, err := os.Stat(s.EndpointPath(network, id))
	return err == nil
}

// names lists the record names (without .json) in dir; a missing dir has none.
func names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !statefile.IsTemp(name) && strings.HasSuffix(name, ".json") {
			out = append(out, strings.TrimSuffix(name, ".json"))
		}
	}
	return out, nil
}

// Endpoints returns the records of network's endpoints. Files that cannot
// be read are returned as errors next to the good records.
func (s *Store[N, E]) Endpoints(network string) ([]*EndpointRecord[E], error) {
	ids, err := names(s.EndpointDir(network))
	if err != nil {
		return nil, fmt.Errorf("listing endpoints of %s: %w", network, err)
	}
	var (
		recs []*EndpointRecord[E]
		errs []error
	)
	for _, id := range ids {
		r, err := s.ReadEndpoint(network, id)
		if errors.Is(err, errkind.NotFound) {
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

// AnyEndpoint reports whether pred holds for one of network's endpoint
// records, reading them one by one until it does. Unreadable records are
// skipped.
func (s *Store[N, E]) AnyEndpoint(network string, pred func(*EndpointRecord[E]) bool) bool {
	// The directory is read a few entries at a time, in its own order,
	// and only until a record says so: usually the first one, where
	// listing (and sorting) a thousand names first cost more than the
	// answer.
	d, err := os.Open(s.EndpointDir(network))
	if err != nil {
		return false
	}
	defer d.Close()
	for {
		entries, err := d.ReadDir(32)
		for _, e := range entries {
			name := e.Name()
			if statefile.IsTemp(name) || !strings.HasSuffix(name, ".json") {
				continue
			}
			if r, err := s.ReadEndpoint(network, strings.TrimSuffix(name, ".json")); err == nil && pred(r) {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
}

// Networks returns the network records. Files that cannot be read are
// returned as errors next to the good records.
func (s *Store[N, E]) Networks() ([]*NetworkRecord[N], error) {
	ns, err := os.ReadDir(filepath.Join(s.dir, "networks"))
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	var (
		recs []*NetworkRecord[N]
		errs []error
	)
	for _, e := range ns {
		name := e.Name()
		if statefile.IsTemp(name) || !strings.HasSuffix(name, ".json") {
			continue
		}
		r, err := s.ReadNetwork(strings.TrimSuffix(name, ".json"))
		if errors.Is(err, errkind.NotFound) {
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
