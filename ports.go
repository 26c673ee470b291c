package sandnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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

// portTable is the Host's record of published host ports, one entry per
// port, so a conflict check reads one file whatever the number of networks
// and endpoints. An entry whose endpoint record is gone is stale (a
// crashed attach) and is ignored.
type portTable struct {
	Version int         `json:"version"`
	Ports   []portEntry `json:"ports"`
}

type portEntry struct {
	Port   PortMapping `json:"port"`
	Holder nat.Holder  `json:"holder"`
}

func (h *Host) portsPath() string     { return filepath.Join(h.dir, "ports.json") }
func (h *Host) portsLockPath() string { return filepath.Join(h.dir, "ports.lock") }

// withPorts runs fn on the port table under the Host's ports lock (a file
// lock: concurrent attaches in any process are serialised) and writes it
// back if fn says so.
func (h *Host) withPorts(ctx context.Context, fn func(t *portTable) (bool, error)) error {
	lock, err := statefile.Acquire(ctx, h.portsLockPath(), false)
	if err != nil {
		return err
	}
	defer lock.Release()
	t, err := readRecord(h.portsPath(), func(t *portTable) int { return t.Version })
	if errors.Is(err, ErrNotFound) {
		t, err = &portTable{Version: stateVersion}, nil
	}
	if err != nil {
		return err
	}
	write, err := fn(t)
	if err != nil || !write {
		return err
	}
	return statefile.WriteJSON(h.portsPath(), t)
}

// live drops stale entries: their endpoint has no record any more.
func (h *Host) live(t *portTable) {
	kept := t.Ports[:0]
	for _, e := range t.Ports {
		if _, err := os.Stat(h.endpointPath(e.Holder.Network, e.Holder.Endpoint)); err == nil {
			kept = append(kept, e)
		}
	}
	t.Ports = kept
}

// claimPorts takes the host ports of ep (picking free ones for mappings
// without), checking them with validate and against every port published
// on the Host; it returns the mappings with their host ports.
func (h *Host) claimPorts(ctx context.Context, ep *Endpoint, ports []PortMapping, validate func([]PortMapping) error) ([]PortMapping, error) {
	out := make([]PortMapping, len(ports))
	copy(out, ports)
	for i := range out {
		if out[i].Proto == "" {
			out[i].Proto = "tcp"
		}
	}
	err := h.withPorts(ctx, func(t *portTable) (bool, error) {
		h.live(t)
		taken := func(p PortMapping, upto int) *portEntry {
			for i := range t.Ports {
				if nat.Conflicts(t.Ports[i].Port, p) {
					return &t.Ports[i]
				}
			}
			for _, q := range out[:upto] {
				if q.HostPort != 0 && nat.Conflicts(q, p) {
					return &portEntry{Port: q, Holder: nat.Holder{Network: ep.Network, Sandbox: ep.SandboxID, Endpoint: ep.ID}}
				}
			}
			return nil
		}
		for i := range out {
			if out[i].HostPort != 0 {
				continue
			}
			for port := firstFreePort; port <= lastFreePort; port++ {
				out[i].HostPort = uint16(port)
				if taken(out[i], i) == nil {
					break
				}
				if port == lastFreePort {
					return false, fmt.Errorf("no free host port left for %s: %w", ports[i], ErrExhausted)
				}
			}
		}
		if err := validate(out); err != nil {
			return false, err
		}
		for i, p := range out {
			if e := taken(p, i); e != nil {
				return false, &nat.PortConflictError{Port: p, Holder: e.Holder}
			}
		}
		for _, p := range out {
			t.Ports = append(t.Ports, portEntry{Port: p, Holder: nat.Holder{Network: ep.Network, Sandbox: ep.SandboxID, Endpoint: ep.ID}})
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// releasePorts removes ep's entries from the port table.
func (h *Host) releasePorts(ctx context.Context, ep *Endpoint) error {
	return h.withPorts(ctx, func(t *portTable) (bool, error) {
		kept := t.Ports[:0]
		for _, e := range t.Ports {
			if !(e.Holder.Network == ep.Network && e.Holder.Endpoint == ep.ID) {
				kept = append(kept, e)
			}
		}
		changed := len(kept) != len(t.Ports)
		t.Ports = kept
		return changed, nil
	})
}

// portsHeldBy lists the ports the table records for ep.
func (h *Host) portsHeldBy(ctx context.Context, ep *Endpoint) ([]PortMapping, error) {
	var held []PortMapping
	err := h.withPorts(ctx, func(t *portTable) (bool, error) {
		for _, e := range t.Ports {
			if e.Holder.Network == ep.Network && e.Holder.Endpoint == ep.ID {
				held = append(held, e.Port)
			}
		}
		return false, nil
	})
	return held, err
}
