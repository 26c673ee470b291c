package sandnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/nat"
)

// ParsePort parses a published port in Docker's -p syntax ("8080:80",
// "127.0.0.1:8080:80/udp", "8000-8010:8000-8010", "[2001:db8::1]:8080:80");
// see nat.ParsePort.
func ParsePort(spec string) ([]PortMapping, error) { return nat.ParsePort(spec) }

// PortConflictError says which sandbox holds a host port; errors.Is(err,
// ErrInUse) is true for it.
type PortConflictError = nat.PortConflictError

// Free host ports are picked from this range for mappings without one.
const (
	firstFreePort = 49153
	lastFreePort  = 65535
)

// The port table records who publishes each host port, as one file per
// protocol and port: StateDir/ports/tcp-8080.json lists the holders of TCP
// port 8080 (one per host address it is published on). A publish reads and
// writes only the files of its own ports, so its cost does not grow with
// the number of endpoints. The endpoint's record lists its ports before
// their files are written, so a Detach or GC after a crash knows which
// files to clean. An entry whose endpoint record is gone is stale and is
// ignored (and dropped by the next claim of that port, or by GC).
//
// All of it is changed under one file lock, StateDir/ports.lock, held for
// the few file operations of one claim or release.

// portFile is the content of one port's file.
type portFile struct {
	Version int         `json:"version"`
	Ports   []portEntry `json:"ports"`
}

type portEntry struct {
	Port   PortMapping `json:"port"`
	Holder nat.Holder  `json:"holder"`
}

func (h *Host) portsDir() string      { return filepath.Join(h.dir, "ports") }
func (h *Host) portsLockPath() string { return filepath.Join(h.dir, "ports.lock") }

func (h *Host) portPath(p PortMapping) string {
	return filepath.Join(h.portsDir(), p.Proto+"-"+strconv.Itoa(int(p.HostPort))+".json")
}

// nextPortPath holds the next free port to try for a protocol, so picking
// free ports goes round the range as Docker does, without scanning it.
func (h *Host) nextPortPath(proto string) string {
	return filepath.Join(h.portsDir(), "next-"+proto)
}

func holderOf(ep *Endpoint) nat.Holder {
	return nat.Holder{Network: ep.Network, Sandbox: ep.SandboxID, Endpoint: ep.ID}
}

func (e portEntry) heldBy(ep *Endpoint) bool {
	return e.Holder.Network == ep.Network && e.Holder.Endpoint == ep.ID
}

// portTx is the port table under its lock.
type portTx struct{ h *Host }

// withPorts runs fn with the port table locked (a file lock: attaches in
// any process are serialised for the duration of fn).
func (h *Host) withPorts(ctx context.Context, fn func(tx portTx) error) error {
	lock, err := statefile.Acquire(ctx, h.portsLockPath(), false)
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := h.migratePorts(); err != nil {
		return err
	}
	return fn(portTx{h})
}

// read returns the entries of p's protocol and host port.
func (tx portTx) read(p PortMapping) ([]portEntry, error) {
	f, err := readRecord(tx.h.portPath(p), func(f *portFile) int { return f.Version })
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return f.Ports, nil
}

// write replaces the entries of p's protocol and host port.
func (tx portTx) write(p PortMapping, es []portEntry) error {
	if len(es) == 0 {
		return statefile.Remove(tx.h.portPath(p))
	}
	return statefile.WriteJSON(tx.h.portPath(p), portFile{Version: stateVersion, Ports: es})
}

// live reports whether e's endpoint still has a record.
func (tx portTx) live(e portEntry) bool {
	_, err := os.Stat(tx.h.endpointPath(e.Holder.Network, e.Holder.Endpoint))
	return err == nil
}

// conflict returns the live entry that p clashes with, if any, other than
// one of ep's own.
func (tx portTx) conflict(p PortMapping, ep *Endpoint) (*portEntry, error) {
	es, err := tx.read(p)
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if nat.Conflicts(e.Port, p) && !e.heldBy(ep) && tx.live(e) {
			return &e, nil
		}
	}
	return nil, nil
}

// add records ep as p's holder. Entries it clashes with that are stale, or
// ep's own from an earlier claim, are replaced.
func (tx portTx) add(p PortMapping, ep *Endpoint) error {
	es, err := tx.read(p)
	if err != nil {
		return err
	}
	kept := es[:0]
	for _, e := range es {
		switch {
		case e.heldBy(ep) && e.Port == p:
			return nil // already recorded
		case nat.Conflicts(e.Port, p) && (e.heldBy(ep) || !tx.live(e)):
		default:
			kept = append(kept, e)
		}
	}
	return tx.write(p, append(kept, portEntry{Port: p, Holder: holderOf(ep)}))
}

// remove drops ep's entries for p's protocol and host port.
func (tx portTx) remove(p PortMapping, ep *Endpoint) error {
	es, err := tx.read(p)
	if err != nil {
		return err
	}
	kept := es[:0]
	for _, e := range es {
		if !e.heldBy(ep) {
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
func (tx portTx) pickFree(p *PortMapping, ep *Endpoint, taken func(PortMapping) bool) error {
	next := firstFreePort
	if b, err := statefile.Read(tx.h.nextPortPath(p.Proto)); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= firstFreePort && n <= lastFreePort {
			next = n
		}
	}
	for range lastFreePort - firstFreePort + 1 {
		p.HostPort = uint16(next)
		if next++; next > lastFreePort {
			next = firstFreePort
		}
		if taken(*p) {
			continue
		}
		e, err := tx.conflict(*p, ep)
		if err != nil {
			return err
		}
		if e == nil {
			return statefile.Write(tx.h.nextPortPath(p.Proto), []byte(strconv.Itoa(next)+"\n"))
		}
	}
	return fmt.Errorf("no free host port left for %s: %w", p, ErrExhausted)
}

// claimPorts takes the host ports of ep (picking free ones for mappings
// without), checking them with validate and against every port published
// on the Host, and records them: in ep's record first, then in the port
// table. It returns the mappings with their host ports.
func (h *Host) claimPorts(ctx context.Context, ep *Endpoint, ports []PortMapping, validate func([]PortMapping) error) ([]PortMapping, error) {
	out := make([]PortMapping, len(ports))
	copy(out, ports)
	for i := range out {
		if out[i].Proto == "" {
			out[i].Proto = "tcp"
		}
	}
	// ownConflict finds a clash between the endpoint's own mappings.
	ownConflict := func(p PortMapping, upto int) bool {
		for _, q := range out[:upto] {
			if q.HostPort != 0 && nat.Conflicts(q, p) {
				return true
			}
		}
		return false
	}
	err := h.withPorts(ctx, func(tx portTx) error {
		for i := range out {
			if out[i].HostPort == 0 {
				if err := tx.pickFree(&out[i], ep, func(p PortMapping) bool { return ownConflict(p, i) }); err != nil {
					return err
				}
			}
		}
		if err := validate(out); err != nil {
			return err
		}
		for i, p := range out {
			if ownConflict(p, i) {
				return &nat.PortConflictError{Port: p, Holder: holderOf(ep)}
			}
			e, err := tx.conflict(p, ep)
			if err != nil {
				return err
			}
			if e != nil {
				return &nat.PortConflictError{Port: p, Holder: e.Holder}
			}
		}
		rec := endpointRecord{Version: stateVersion, State: stateAttaching, PID: os.Getpid(), Endpoint: *ep}
		rec.Endpoint.Ports = out
		if err := statefile.WriteJSON(h.endpointPath(ep.Network, ep.ID), rec); err != nil {
			return err
		}
		for _, p := range out {
			if err := tx.add(p, ep); err != nil {
				return errors.Join(err, releaseAll(tx, ep, out))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func releaseAll(tx portTx, ep *Endpoint, ports []PortMapping) error {
	var errs []error
	for _, p := range ports {
		errs = append(errs, tx.remove(p, ep))
	}
	return errors.Join(errs...)
}

// releasePorts removes ep's entries for ports from the port table.
func (h *Host) releasePorts(ctx context.Context, ep *Endpoint, ports []PortMapping) error {
	if len(ports) == 0 {
		return nil
	}
	return h.withPorts(ctx, func(tx portTx) error { return releaseAll(tx, ep, ports) })
}

// portsHeld returns those of ports that the port table records for ep.
func (h *Host) portsHeld(ctx context.Context, ep *Endpoint, ports []PortMapping) ([]PortMapping, error) {
	var held []PortMapping
	err := h.withPorts(ctx, func(tx portTx) error {
		for _, p := range ports {
			es, err := tx.read(p)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.heldBy(ep) && e.Port == p {
					held = append(held, p)
					break
				}
			}
		}
		return nil
	})
	return held, err
}

// reclaimPorts puts ep's published ports back in the port table, unless
// another endpoint took one meanwhile (a *nat.PortConflictError).
func (h *Host) reclaimPorts(ctx context.Context, ep *Endpoint) error {
	return h.withPorts(ctx, func(tx portTx) error {
		for _, p := range ep.Ports {
			e, err := tx.conflict(p, ep)
			if err != nil {
				return err
			}
			if e != nil {
				return &nat.PortConflictError{Port: p, Holder: e.Holder}
			}
		}
		for _, p := range ep.Ports {
			if err := tx.add(p, ep); err != nil {
				return err
			}
		}
		return nil
	})
}

// listPorts returns every entry of the port table, stale ones included.
func (h *Host) listPorts(ctx context.Context) ([]portEntry, error) {
	var all []portEntry
	err := h.withPorts(ctx, func(tx portTx) error {
		var errs []error
		tx.each(func(path string, f *portFile, err error) {
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
func (tx portTx) each(fn func(path string, f *portFile, err error)) {
	entries, err := os.ReadDir(tx.h.portsDir())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			fn(tx.h.portsDir(), nil, err)
		}
		return
	}
	for _, e := range entries {
		name := e.Name()
		if statefile.IsTemp(name) || !strings.HasSuffix(name, ".json") {
			continue
		}
		path := filepath.Join(tx.h.portsDir(), name)
		f, err := readRecord(path, func(f *portFile) int { return f.Version })
		if errors.Is(err, ErrNotFound) {
			continue
		}
		fn(path, f, err)
	}
}

// gcPorts drops the port table's stale entries (their endpoint record is
// gone) and returns them as "proto/port held by network/sandbox".
func (h *Host) gcPorts(ctx context.Context) ([]string, error) {
	var dropped []string
	err := h.withPorts(ctx, func(tx portTx) error {
		var errs []error
		tx.each(func(path string, f *portFile, err error) {
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
				errs = append(errs, statefile.WriteJSON(path, portFile{Version: stateVersion, Ports: kept}))
			}
		})
		return errors.Join(errs...)
	})
	return dropped, err
}

// migratePorts moves the single port table of older versions
// (StateDir/ports.json) into one file per port, once per Host; the caller
// holds the ports lock.
func (h *Host) migratePorts() error {
	if h.portsMigrated.Load() {
		return nil
	}
	if err := statefile.MkdirAll(h.portsDir()); err != nil {
		return err
	}
	old := filepath.Join(h.dir, "ports.json")
	f, err := readRecord(old, func(f *portFile) int { return f.Version })
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	default:
		tx := portTx{h}
		for _, e := range f.Ports {
			if !tx.live(e) {
				continue
			}
			ep := &Endpoint{Network: e.Holder.Network, SandboxID: e.Holder.Sandbox, ID: e.Holder.Endpoint}
			if err := tx.add(e.Port, ep); err != nil {
				return err
			}
		}
		if err := statefile.Remove(old); err != nil {
			return err
		}
	}
	h.portsMigrated.Store(true)
	return nil
}
