package sandnet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sandnet/sandnet/internal/statefile"
)

// netState is what a Host caches about a network it has used.
type netState struct {
	rec   networkRecord
	stamp statefile.Stamp
}

// CreateNetwork creates a network explicitly (it stays until RemoveNetwork
// even without endpoints) and returns its definition with defaults filled in.
// Creating it again with the same definition is not an error.
func (h *Host) CreateNetwork(ctx context.Context, n Network) (Network, error) {
	st, err := h.ensureNetwork(ctx, n, false)
	if err != nil {
		return Network{}, err
	}
	return st.rec.Network, nil
}

// Network returns the recorded definition of the network called name.
func (h *Host) Network(name string) (Network, error) {
	if err := checkName("network", name); err != nil {
		return Network{}, err
	}
	rec, err := h.st.ReadNetwork(name)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Network{}, fmt.Errorf("network %q: %w", name, ErrNotFound)
		}
		return Network{}, err
	}
	return rec.Network, nil
}

// Networks lists the recorded networks, sorted by name.
func (h *Host) Networks() ([]Network, error) {
	recs, err := h.st.Networks()
	var nets []Network
	for _, r := range recs {
		nets = append(nets, r.Network)
	}
	sort.Slice(nets, func(i, j int) bool { return nets[i].Name < nets[j].Name })
	return nets, err
}

// useNetwork returns the network n refers to, creating it if needed, with a
// shared lock on it that keeps RemoveNetwork away until released.
func (h *Host) useNetwork(ctx context.Context, n Network) (*netState, *statefile.Lock, error) {
	if err := checkName("network", n.Name); err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		lock, err := h.st.LockNetwork(ctx, n.Name, true)
		if err != nil {
			return nil, nil, err
		}
		st, err := h.cachedNetwork(n)
		if err == nil && st != nil {
			return st, lock, nil
		}
		lock.Release()
		if err != nil || attempt > 0 {
			return nil, nil, err
		}
		if _, err := h.ensureNetwork(ctx, n, true); err != nil {
			return nil, nil, err
		}
	}
}

// cachedNetwork returns the recorded network matching n, or nil if there is
// none; a recorded network with another definition is ErrExists.
func (h *Host) cachedNetwork(n Network) (*netState, error) {
	stamp, ok := statefile.StampOf(h.st.NetworkPath(n.Name))
	if !ok {
		return nil, nil
	}
	h.mu.Lock()
	st := h.nets[n.Name]
	h.mu.Unlock()
	if st == nil || st.stamp != stamp {
		rec, err := h.st.ReadNetwork(n.Name)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		st = &netState{rec: *rec, stamp: stamp}
		h.mu.Lock()
		h.nets[n.Name] = st
		h.mu.Unlock()
	}
	if err := matches(n, st.rec.Network); err != nil {
		return nil, err
	}
	return st, nil
}

func matches(want, have Network) error {
	if want.isReference() {
		return nil
	}
	norm, err := want.withDefaults()
	if err != nil {
		return err
	}
	if !norm.sameAs(have) {
		return fmt.Errorf("network %q exists with another definition (%s %s): %w", want.Name, have.Driver, have.Subnet, ErrExists)
	}
	return nil
}

// ensureNetwork creates the network if it has no record, under the global
// networks lock, and returns it.
func (h *Host) ensureNetwork(ctx context.Context, n Network, implicit bool) (*netState, error) {
	if n.isReference() {
		if st, err := h.cachedNetwork(n); st != nil || err != nil {
			return st, err
		}
		return nil, fmt.Errorf("network %q: %w (give at least a driver or subnet to create it)", n.Name, ErrNotFound)
	}
	def, err := n.withDefaults()
	if err != nil {
		return nil, err
	}
	glock, err := h.st.LockNetworks(ctx)
	if err != nil {
		return nil, err
	}
	defer glock.Release()
	nlock, err := h.st.LockNetwork(ctx, n.Name, false)
	if err != nil {
		return nil, err
	}
	defer nlock.Release()
	if st, err := h.cachedNetwork(n); st != nil || err != nil {
		return st, err
	}
	drv, err := driverFor(def.Driver)
	if err != nil {
		return nil, err
	}
	if err := drv.hostDefaults(h, &def); err != nil {
		return nil, err
	}
	if err := h.checkOverlap(def); err != nil {
		return nil, err
	}
	rec := networkRecord{Version: stateVersion, Network: def, Created: time.Now().UTC(), Implicit: implicit}
	undo, err := drv.createNetwork(ctx, h, &rec)
	if err != nil {
		return nil, &StepError{Op: "create network", Object: fmt.Sprintf("%q", def.Name), Step: stepCreateNetwork, Err: err}
	}
	if err := h.st.WriteNetwork(def.Name, &rec); err != nil {
		return nil, &StepError{Op: "create network", Object: fmt.Sprintf("%q", def.Name), Step: stepRecordNetwork, Err: errors.Join(err, undo.run(ctx))}
	}
	stamp, _ := statefile.StampOf(h.st.NetworkPath(def.Name))
	st := &netState{rec: rec, stamp: stamp}
	h.mu.Lock()
	h.nets[def.Name] = st
	h.mu.Unlock()
	return st, nil
}

func (h *Host) checkOverlap(n Network) error {
	recs, err := h.st.Networks()
	if err != nil {
		return err
	}
	for _, r := range recs {
		o := r.Network
		if o.Name == n.Name {
			continue
		}
		if overlaps(n.Subnet, o.Subnet) || overlaps(n.Subnet6, o.Subnet6) {
			return fmt.Errorf("network %q: subnet overlaps network %q (%s %s): %w", n.Name, o.Name, o.Subnet, o.Subnet6, ErrExists)
		}
		if n.Bridge != "" && n.Bridge == o.Bridge {
			return fmt.Errorf("network %q: bridge %s is network %q's: %w", n.Name, n.Bridge, o.Name, ErrExists)
		}
	}
	return nil
}

// RemoveNetwork removes a network with no endpoints: its bridge (if sandnet
// created it), rules, leases and record. A network that is not there is not
// an error; one that still has endpoints is ErrInUse.
func (h *Host) RemoveNetwork(ctx context.Context, name string) error {
	if err := checkName("network", name); err != nil {
		return err
	}
	release, err := h.st.LockNetworkExclusive(ctx, name)
	if err != nil {
		return err
	}
	defer release()
	return h.removeNetworkLocked(ctx, name, false)
}

// removeNetworkLocked removes the network; the caller holds its locks.
// onlyImplicit keeps networks that were created explicitly.
func (h *Host) removeNetworkLocked(ctx context.Context, name string, onlyImplicit bool) error {
	rec, err := h.st.ReadNetwork(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if onlyImplicit && !rec.Implicit {
		return nil
	}
	eps, err := h.st.Endpoints(name)
	if err != nil {
		return err
	}
	if len(eps) > 0 {
		return fmt.Errorf("removing network %q: %d endpoint(s) attached, e.g. sandbox %q: %w", name, len(eps), eps[0].Endpoint.SandboxID, ErrInUse)
	}
	drv, err := driverFor(rec.Network.Driver)
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, drv.removeNetwork(ctx, h, rec))
	errs = append(errs, h.ipam.ReleaseNetwork(ctx, name))
	errs = append(errs, h.st.RemoveNetwork(name))
	h.mu.Lock()
	delete(h.nets, name)
	h.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing network %q: %w", name, err)
	}
	return nil
}

// withNetworkExclusive runs fn on network name's record with the network
// locked exclusively, so no attach is in flight; a network that is not
// there is not an error, and fn does not run.
func (h *Host) withNetworkExclusive(ctx context.Context, name string, fn func(*networkRecord) error) error {
	release, err := h.st.LockNetworkExclusive(ctx, name)
	if err != nil {
		return err
	}
	defer release()
	nrec, err := h.st.ReadNetwork(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return fn(nrec)
}
