package state

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/nat"
)

// Free host ports are picked from this range for mappings without one.
const (
	FirstFreePort = 49153
	LastFreePort  = 65535
)

// The port table records who publishes each host port, as one file per
// protocol and port: StateDir/ports/tcp-8080.json lists the holders of TCP
// port 8080 (one per host address it is published on). A publish reads and
// writes only the files of its own ports, so its cost does not grow with
// the number of endpoints. The caller records the ports in the endpoint's
// record (Claim's record function) before their files are written, so a
// Detach or GC after a crash knows which files to clean. An entry whose
// endpoint has no record is stale and is ignored (and dropped by the next
// claim of that port, or by GC).
//
// All of it is changed under one file lock, StateDir/ports.lock, held for
// the few file operations of one claim or release.

// PortFile is the content of one port's file.
type PortFile struct {
	Version int         `json:"version"`
	Ports   []PortEntry `json:"ports"`
}

// PortEntry says who publishes a port.
type PortEntry struct {
	Port   nat.PortMapping `json:"port"`
	Holder nat.Holder      `json:"holder"`
}

// ports is the port table of a state dir.
type ports struct {
	dir      string
	live     func(network, id string) bool // whether an endpoint has a record
	migrated atomic.Bool                   // the table is in the current layout
}

func (pt *ports) portsDir() string { return filepath.Join(pt.dir, "ports") }

// PortPath is the file of p's protocol and host port.
func (s *Store[N, E]) PortPath(p nat.PortMapping) string { return s.ports.portPath(p) }

// NextPortPath holds the next free port to try for proto.
func (s *Store[N, E]) NextPortPath(proto string) string { return s.ports.nextPortPath(proto) }

func (pt *ports) portPath(p nat.PortMapping) string {
	return filepath.Join(pt.portsDir(), p.Proto+"-"+strconv.Itoa(int(p.HostPort))+".json")
}

// nextPortPath holds the next free port to try for a protocol, so picking
// free ports goes round the range as Docker does, without scanning it.
func (pt *ports) nextPortPath(proto string) string {
	return filepath.Join(pt.portsDir(), "next-"+proto)
}

func (e PortEntry) heldBy(h nat.Holder) bool {
	return e.Holder.Network == h.Network && e.Holder.Endpoint == h.Endpoint
}

// portTx is the port table under its lock.
type portTx struct{ pt *ports }

// with runs fn with the port table locked (a file lock: attaches in any
// process are serialised for the duration of fn).
func (pt *ports) with(ctx context.Context, fn func(tx portTx) error) error {
	lock, err := statefile.Acquire(ctx, filepath.Join(pt.dir, "ports.lock"), false)
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := pt.migrate(); err != nil {
		return err
	}
	return fn(portTx{pt})
}

// read returns the entries of p's protocol and host port.
func (tx portTx) read(p nat.PortMapping) ([]PortEntry, error) {
	f, err := Read(tx.pt.portPath(p), func(f *PortFile) int { return f.Version })
	if errors.Is(err, errkind.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return f.Ports, nil
}

// write replaces the entries of p's protocol and host port.
func (tx portTx) write(p nat.PortMapping, es []PortEntry) error {
	if len(es) == 0 {
		return statefile.Remove(tx.pt.portPath(p))
	}
	return statefile.WriteJSON(tx.pt.portPath(p), PortFile{Version: Version, Ports: es})
}

// live reports whether e's endpoint still has a record.
func (tx portTx) live(e PortEntry) bool {
	return tx.pt.live(e.Holder.Network, e.Holder.Endpoint)
}

// conflict returns the live entry that p clashes with, if any, other than
// one of h's own.
func (tx portTx) conflict(p nat.PortMapping, h nat.Holder) (*PortEntry, error) {
	es, err := tx.read(p)
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if nat.Conflicts(e.Port, p) && !e.heldBy(h) && tx.live(e) {
			return &e, nil
		}
	}
	return nil, nil
}

// add records h as p's holder. Entries it clashes with that are stale, or
// h's own from an earlier claim, are replaced.
func (tx portTx) add(p nat.PortMapping, h nat.Holder) error {
	es, err := tx.read(p)
	if err != nil {
		return err
	}
	kept := es[:0]
	for _, e := range es {
		switch {
		case e.heldBy(h) && e.Port == p:
			return nil // already recorded
		case nat.Conflicts(e.Port, p) && (e.heldBy(h) || !tx.live(e)):
		default:
			kept = append(kept, e)
		}
	}
	return tx.write(p, append(kept, PortEntry{Port: p, Holder: h}))
}

// remove drops h's entries for p's protocol and host port.
func (tx portTx) remove(p nat.PortMapping, h nat.Holder) error {
	es, err := tx.read(p)
	if err != nil {
		return err
	}
	kept := es[:0]
	for _, e := range es {
		if !e.heldBy(h) {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(es) {
		return nil
	}
	return tx.write(p, kept)
}

// pickFree sets the host port of p, which has none, to a free one: the
// first free port from the protocol's cursor on, going round the range.
// taken reports ports already picked for the same endpoint.
func (tx portTx) pickFree(p *nat.PortMapping, h nat.Holder, taken func(nat.PortMapping) bool) error {
	next := FirstFreePort
	if b, err := statefile.Read(tx.pt.nextPortPath(p.Proto)); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= FirstFreePort && n <= LastFreePort {
			next = n
		}
	}
	for range LastFreePort - FirstFreePort + 1 {
		p.HostPort = uint16(next)
		if next++; next > LastFreePort {
			next = FirstFreePort
		}
		if taken(*p) {
			continue
		}
		e, err := tx.conflict(*p, h)
		if err != nil {
			return err
		}
		if e == nil {
			return statefile.Write(tx.pt.nextPortPath(p.Proto), []byte(strconv.Itoa(next)+"\n"))
		}
	}
	return fmt.Errorf("no free host port left for %s: %w", p, errkind.Exhausted)
}

// ClaimPorts takes the host ports of holder h (picking free ones for
// mappings without), checks them with validate and against every port
// published on the state dir, and records them: with record (the caller
// writes them in the endpoint's record) first, then in the port table. It
// returns the mappings with their host ports. A conflict is a
// *nat.PortConflictError.
func (s *Store[N, E]) ClaimPorts(ctx context.Context, h nat.Holder, ports []nat.PortMapping, validate, record func([]nat.PortMapping) error) ([]nat.PortMapping, error) {
	out := make([]nat.PortMapping, len(ports))
	copy(out, ports)
	for i := range out {
		if out[i].Proto == "" {
			out[i].Proto = "tcp"
		}
	}
	// ownConflict finds a clash between the endpoint's own mappings.
	ownConflict := func(p nat.PortMapping, upto int) bool {
		for _, q := range out[:upto] {
			if q.HostPort != 0 && nat.Conflicts(q, p) {
				return true
			}
		}
		return false
	}
	err := s.ports.with(ctx, func(tx portTx) error {
		for i := range out {
			if out[i].HostPort == 0 {
				if err := tx.pickFree(&out[i], h, func(p nat.PortMapping) bool { return ownConflict(p, i) }); err != nil {
					return err
				}
			}
		}
		if err := validate(out); err != nil {
			return err
		}
		for i, p := range out {
			if ownConflict(p, i) {
				return &nat.PortConflictError{Port: p, Holder: h}
			}
			e, err := tx.conflict(p, h)
			if err != nil {
				return err
			}
			if e != nil {
				return &nat.PortConflictError{Port: p, Holder: e.Holder}
			}
		}
		if err := record(out); err != nil {
			return err
		}
		for _, p := range out {
			if err := tx.add(p, h); err != nil {
				return errors.Join(err, releaseAll(tx, h, out))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func releaseAll(tx portTx, h nat.Holder, ports []nat.PortMapping) error {
	var errs []error
	for _, p := range ports {
		errs = append(errs, tx.remove(p, h))
	}
	return errors.Join(errs...)
}

// ReleasePorts removes h's entries for ports from the port table.
func (s *Store[N, E]) ReleasePorts(ctx context.Context, h nat.Holder, ports []nat.PortMapping) error {
	if len(ports) == 0 {
		return nil
	}
	return s.ports.with(ctx, func(tx portTx) error { return releaseAll(tx, h, ports) })
}

// PortsHeld returns those of ports that the port table records for h.
func (s *Store[N, E]) PortsHeld(ctx context.Context, h nat.Holder, ports []nat.PortMapping) ([]nat.PortMapping, error) {
	var held []nat.PortMapping
	err := s.ports.with(ctx, func(tx portTx) error {
		for _, p := range ports {
			es, err := tx.read(p)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.heldBy(h) && e.Port == p {
					held = append(held, p)
					break
				}
			}
		}
		return nil
	})
	return held, err
}

// ReclaimPorts puts h's ports back in the port table, unless another
// endpoint took one meanwhile (a *nat.PortConflictError).
func (s *Store[N, E]) ReclaimPorts(ctx context.Context, h nat.Holder, ports []nat.PortMapping) error {
	return s.ports.with(ctx, func(tx portTx) error {
		for _, p := range ports {
			e, err := tx.conflict(p, h)
			if err != nil {
				return err
			}
			if e != nil {
				return &nat.PortConflictError{Port: p, Holder: e.Holder}
			}
		}
		for _, p := range ports {
			if err := tx.add(p, h); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListPorts returns every entry of the port table, stale ones included.
func (s *Store[N, E]) ListPorts(ctx context.Context) ([]PortEntry, error) {
	var all []PortEntry
	err := s.ports.with(ctx, func(tx portTx) error {
		var errs []error
		tx.each(func(path string, f *PortFile, err error) {
			errs = append(errs, err)
			if f != nil {
				all = append(all, f.Ports...)
			}
		})
		return errors.Join(errs...)
	})
	return all, err
}

// each calls fn for every port file.
func (tx portTx) each(fn func(path string, f *PortFile, err error)) {
	names, err := names(tx.pt.portsDir())
	if err != nil {
		fn(tx.pt.portsDir(), nil, err)
		return
	}
	for _, name := range names {
		path := filepath.Join(tx.pt.portsDir(), name+".json")
		f, err := Read(path, func(f *PortFile) int { return f.Version })
		if errors.Is(err, errkind.NotFound) {
			continue
		}
		fn(path, f, err)
	}
}

// GCPorts drops the port table's stale entries (their endpoint has no
// record) and returns them as "proto/port held by network/sandbox".
func (s *Store[N, E]) GCPorts(ctx context.Context) ([]string, error) {
	var dropped []string
	err := s.ports.with(ctx, func(tx portTx) error {
		var errs []error
		tx.each(func(path string, f *PortFile, err error) {
			if err != nil {
				errs = append(errs, err)
				return
			}
			kept := f.Ports[:0]
			for _, e := range f.Ports {
				if tx.live(e) {
					kept = append(kept, e)
				} else {
					dropped = append(dropped, fmt.Sprintf("%s held by %s/%s", e.Port, e.Holder.Network, e.Holder.Sandbox))
				}
			}
			switch {
			case len(kept) == len(f.Ports):
			case len(kept) == 0:
				errs = append(errs, statefile.Remove(path))
			default:
				errs = append(errs, statefile.WriteJSON(path, PortFile{Version: Version, Ports: kept}))
			}
		})
		return errors.Join(errs...)
	})
	return dropped, err
}

// migrate moves the single port table of older versions
// (StateDir/ports.json) into one file per port, once per Store; the caller
// holds the ports lock.
func (pt *ports) migrate() error {
	if pt.migrated.Load() {
		return nil
	}
	if err := statefile.MkdirAll(pt.portsDir()); err != nil {
		return err
	}
	old := filepath.Join(pt.dir, "ports.json")
	f, err := Read(old, func(f *PortFile) int { return f.Version })
	switch {
	case errors.Is(err, errkind.NotFound):
	case err != nil:
		return err
	default:
		tx := portTx{pt}
		for _, e := range f.Ports {
			if !tx.live(e) {
				continue
			}
			if err := tx.add(e.Port, e.Holder); err != nil {
				return err
			}
		}
		if err := statefile.Remove(old); err != nil {
			return err
		}
	}
	pt.migrated.Store(true)
	return nil
}
