package sandnet

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

// Detach undoes an Attach: published ports, DNS name, interfaces, lease and
// record, in reverse order, best effort. It is idempotent and works when the
// sandbox namespace is already gone. opts (at most one) say how.
//
// When Detach returns, the sandbox's interfaces are gone from both
// namespaces. The kernel frees a deleted veth after an RCU grace period
// (about 16 ms, most of what ip link del waits for): Detach does not wait
// for that, Host.Close does.
func (h *Host) Detach(ctx context.Context, ep *Endpoint, opts ...DetachOptions) error {
	if ep == nil {
		return invalidf("detach: nil endpoint")
	}
	if len(opts) > 1 {
		return invalidf("detach: %d sets of options, want at most one", len(opts))
	}
	if len(opts) == 1 && opts[0].SandboxGoing {
		ctx = context.WithValue(ctx, sandboxGoingKey{}, true)
	}
	return h.detach(ctx, ep.Network, endpointIDOf(ep))
}

// DetachOptions says how to detach. Zero values mean defaults.
type DetachOptions struct {
	// SandboxGoing says that the caller deletes the sandbox namespace right
	// after Detach (a runtime tearing a container down). Detach then leaves
	// the interfaces inside it to the kernel, which removes a veth pair with
	// its namespace, and skips the link deletion (about 1 ms under the
	// kernel's lock, beside the kernel's RCU wait that Detach leaves to a
	// goroutine). If the namespace lives on after all, the host-side
	// veth stays until the namespace goes, or until an Attach of the same
	// sandbox and interface replaces it.
	SandboxGoing bool
}

// sandboxGoingKey marks a detach context whose sandbox namespace is about to
// be deleted; drivers read it with sandboxGoing, so the driver interface
// stays as it is.
type sandboxGoingKey struct{}

func sandboxGoing(ctx context.Context) bool {
	v, _ := ctx.Value(sandboxGoingKey{}).(bool)
	return v
}

// DetachSandbox detaches every interface of the sandbox sandboxID from
// network, also from a process other than the one that attached it. A
// sandbox that is not attached is not an error.
func (h *Host) DetachSandbox(ctx context.Context, network, sandboxID string) error {
	if err := errors.Join(checkName("network", network), checkName("sandbox", sandboxID)); err != nil {
		return err
	}
	eps, err := h.Endpoints(network)
	if err != nil && len(eps) == 0 {
		return err
	}
	var errs []error
	for _, ep := range eps {
		if ep.SandboxID == sandboxID {
			errs = append(errs, h.detach(ctx, network, ep.ID))
		}
	}
	return errors.Join(errs...)
}

func endpointIDOf(ep *Endpoint) string {
	if ep.ID != "" {
		return ep.ID
	}
	ifName := ep.IfName
	if ifName == "" {
		ifName = "eth0"
	}
	return endpointID(ep.Network, ep.SandboxID, ifName)
}

func (h *Host) detach(ctx context.Context, network, id string) error {
	if err := checkName("network", network); err != nil {
		return err
	}
	lock, err := h.st.LockNetwork(ctx, network, true)
	if err != nil {
		return err
	}
	defer lock.Release()
	rec, err := h.st.ReadEndpoint(network, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	nrec, err := h.st.ReadNetwork(network)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := h.teardown(ctx, nrec, &rec.Endpoint); err != nil {
		return &StepError{Op: "detach", Object: fmt.Sprintf("sandbox %q from network %q", rec.Endpoint.SandboxID, network), Step: stepTearDown, Err: err}
	}
	return nil
}

// teardown removes everything an endpoint owns, then its lease, then its
// record; if the driver's part fails, the lease and the record stay, so a
// later Detach or GC can finish, and until then the endpoint's addresses go
// to no other endpoint (the driver's detach removes what it set up for
// them by address, e.g. the bridge's neighbour entries, so a retry must
// not find them handed on).
func (h *Host) teardown(ctx context.Context, nrec *networkRecord, ep *Endpoint) error {
	if len(ep.Addresses) == 0 && (nrec == nil || traitsOf(nrec.Network.Driver).ipam) {
		// An attach that died before recording its addresses: the lease has
		// them, and the firewall backend may need them to find its elements.
		if l, err := h.ipam.Get(leaseKey(ep)); err == nil {
			ep.Addresses = l.Addrs
		}
	}
	if nrec != nil {
		drv, err := driverFor(nrec.Network.Driver)
		if err == nil {
			err = drv.detach(ctx, h, nrec, ep)
		}
		if err != nil {
			return err
		}
	}
	if nrec == nil || traitsOf(nrec.Network.Driver).ipam {
		if err := h.ipam.Release(ctx, leaseKey(ep)); err != nil {
			return err
		}
	}
	return h.st.RemoveEndpoint(ep.Network, ep.ID)
}

// Endpoints lists the endpoints recorded on network (all networks if ""),
// sorted by network and sandbox ID. Records that cannot be read are
// reported in the error next to the ones that could.
func (h *Host) Endpoints(network string) ([]*Endpoint, error) {
	var names []string
	if network != "" {
		if err := checkName("network", network); err != nil {
			return nil, err
		}
		names = []string{network}
	} else {
		nets, err := h.Networks()
		if err != nil {
			return nil, err
		}
		for _, n := range nets {
			names = append(names, n.Name)
		}
	}
	var (
		eps  []*Endpoint
		errs []error
	)
	for _, name := range names {
		recs, err := h.st.Endpoints(name)
		errs = append(errs, err)
		for _, r := range recs {
			ep := r.Endpoint
			eps = append(eps, &ep)
		}
	}
	sort.Slice(eps, func(i, j int) bool {
		if eps[i].Network != eps[j].Network {
			return eps[i].Network < eps[j].Network
		}
		return eps[i].SandboxID+eps[i].IfName < eps[j].SandboxID+eps[j].IfName
	})
	return eps, errors.Join(errs...)
}

// EndpointsOf lists the endpoints, on any network, of the sandbox namespace ns.
func (h *Host) EndpointsOf(ns *netns.NS) ([]*Endpoint, error) {
	all, err := h.Endpoints("")
	var mine []*Endpoint
	for _, ep := range all {
		if ep.NetNSInode == ns.Inode() {
			mine = append(mine, ep)
		}
	}
	return mine, err
}

// removeVeth deletes the host-side veth name (its peer goes with it) and
// returns once the kernel has taken the pair out of the host and the
// sandbox: the kernel's RCU wait before it frees them (about 16 ms, most
// of a bare deletion) is not the caller's to wait for. With an
// explanation, the deletion is ip link del's, wait included.
func (h *Host) removeVeth(ctx context.Context, name string) error {
	if explain.Enabled(ctx) {
		return veth.Delete(ctx, h.ns, name)
	}
	done, err := veth.Unregister(ctx, h.ns, name)
	if err != nil {
		return err
	}
	h.freeing.Add(1)
	go func() {
		<-done
		h.freeing.Done()
	}()
	return nil
}
