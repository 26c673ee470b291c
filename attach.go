package sandnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
	"github.com/vishvananda/netlink"
)

// Step names a step of an operation; a StepError carries one.
type Step string

// The named steps of Attach, in order, except that the bridge driver starts
// the port and DNS steps before the link step and runs them beside it and
// the configuring (they need the address, not the interface).
const (
	StepOpenSandbox Step = "opening sandbox namespace"
	StepNetwork     Step = "ensuring network"
	StepClaim       Step = "claiming endpoint"
	StepAddress     Step = "allocating address"
	StepLink        Step = "creating interface"
	StepConfigure   Step = "configuring sandbox interface"
	StepDNS         Step = "setting up DNS"
	StepPorts       Step = "publishing ports"
	StepRecord      Step = "recording endpoint"
)

// The steps of other operations.
const (
	stepCheckOptions  Step = "checking options"
	stepTearDown      Step = "tearing down"
	stepCreateNetwork Step = "setting up the network"
	stepRecordNetwork Step = "recording the network"
)

// Attach connects the sandbox (a namespace name, path or "pid:PID") to
// network n with n's driver, creating the network on first use. On failure
// every step done is undone and the error, a *StepError, names the step.
func (h *Host) Attach(ctx context.Context, sandbox string, n Network, opts AttachOptions) (*Endpoint, error) {
	sb, err := netns.Open(sandbox)
	if err != nil {
		return nil, &StepError{Op: "attach", Object: fmt.Sprintf("sandbox %s to network %q", sandbox, n.Name), Step: StepOpenSandbox, Err: err}
	}
	defer sb.Close()
	return h.AttachNS(ctx, sb, n, opts)
}

// attachTx is one Attach in progress.
type attachTx struct {
	h    *Host
	net  *networkRecord
	sb   *netns.NS
	opts AttachOptions
	ep   *Endpoint
	undo undoStack
	// links are the sandbox's interface and its bridge port, as the steps
	// that made them found them, for the later steps.
	links txLinks
	// birth is the visit to the sandbox that makes its interface with IPv6
	// off, begun as soon as the network is known (iface.Birth): its slow
	// first lookup of the sandbox's IPv6 settings runs beside the claim
	// and the address.
	birth *iface.Birth
	// running counts the goroutines of beside. Every path joins its own;
	// AttachNS also waits for them on its way out, so that not even a
	// panic leaves one running after it (with the network's lock gone).
	running sync.WaitGroup
}

// txLinks are the links an attach made, for its later steps.
type txLinks struct {
	sandbox *iface.Link  // the endpoint's interface, in its sandbox
	port    netlink.Link // its bridge port, in the host namespace
	bridge  netlink.Link // the bridge
	ipv6Off bool         // the sandbox's interface was made with IPv6 off
}

func (tx *attachTx) step(ctx context.Context, name Step, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return tx.fail(name, err)
	}
	if hook := tx.h.stepHook; hook != nil {
		if err := hook(name); err != nil {
			return tx.fail(name, err)
		}
	}
	if err := fn(); err != nil {
		return tx.fail(name, err)
	}
	return nil
}

func (tx *attachTx) fail(step Step, err error) error {
	return &StepError{Op: "attach", Object: fmt.Sprintf("sandbox %q to network %q", tx.ep.SandboxID, tx.ep.Network), Step: step, Err: err}
}

// dnsBeside runs the DNS step beside links, the steps that make and
// configure the endpoint's interfaces: startDNS's slow part (the files,
// the name server) waits on other kernel objects than the links do, and
// neither needs the other. The DNS step's hook runs before both; an error
// of the DNS step is reported as its own, after links' own.
func (tx *attachTx) dnsBeside(ctx context.Context, links func() error) error {
	var join func() error
	if err := tx.step(ctx, StepDNS, func() (err error) {
		join, err = tx.h.startDNS(ctx, tx, true)
		return err
	}); err != nil {
		return err
	}
	err := links()
	if jerr := join(); jerr != nil && err == nil {
		err = tx.fail(StepDNS, jerr)
	}
	return err
}

// beside starts work on a goroutine of its own (in background) and returns
// the function that waits for it and passes its error to finish, which
// brings its results into the transaction. Not in background, or with an
// explanation asked for, work runs when waited for, after the steps beside
// it, as the explanation reads.
func (tx *attachTx) beside(ctx context.Context, background bool, work func() error, finish func(error) error) (wait func() error) {
	if !background || explain.Enabled(ctx) {
		return func() error { return finish(work()) }
	}
	done := make(chan error, 1)
	tx.running.Add(1)
	go func() {
		defer tx.running.Done()
		done <- work()
	}()
	return func() error { return finish(<-done) }
}

// AttachNS is Attach for a namespace the caller has open.
func (h *Host) AttachNS(ctx context.Context, sb *netns.NS, n Network, opts AttachOptions) (*Endpoint, error) {
	if opts.IfName == "" {
		opts.IfName = "eth0"
	}
	if opts.SandboxID == "" {
		opts.SandboxID = sb.Name()
		if opts.SandboxID == "" {
			opts.SandboxID = fmt.Sprintf("ns-%d", sb.Inode())
		}
	}
	ep := &Endpoint{
		Network:    n.Name,
		SandboxID:  opts.SandboxID,
		NetNS:      sb.Path(),
		NetNSInode: sb.Inode(),
		IfName:     opts.IfName,
		Hostname:   opts.Hostname,
		Aliases:    opts.Aliases,
	}
	tx := &attachTx{h: h, sb: sb, opts: opts, ep: ep}
	if err := checkOptions(n.Name, &opts); err != nil {
		return nil, tx.fail(stepCheckOptions, err)
	}
	if err := checkInternalPorts(n, &opts); err != nil {
		return nil, tx.fail(stepCheckOptions, err)
	}
	ep.ID = endpointID(n.Name, opts.SandboxID, opts.IfName)

	var (
		st   *netState
		lock *statefile.Lock
	)
	if err := tx.step(ctx, StepNetwork, func() (err error) {
		st, lock, err = h.useNetwork(ctx, n)
		return err
	}); err != nil {
		return nil, err
	}
	defer lock.Release()
	defer tx.running.Wait() // before the lock goes
	tx.net = &st.rec
	if err := checkInternalPorts(st.rec.Network, &opts); err != nil {
		return nil, tx.fail(StepNetwork, err)
	}
	ep.Driver = st.rec.Network.Driver
	drv, err := driverFor(ep.Driver)
	if err != nil {
		return nil, tx.fail(StepNetwork, err)
	}
	if h.ns.Equal(sb) && !drv.traits().hostNS {
		return nil, tx.fail(StepNetwork, invalidf("the sandbox is the host namespace itself; only the host driver attaches it"))
	}
	if drv.traits().veth && !st.rec.Network.Subnet6.IsValid() {
		tx.birth = iface.BeginBornWithoutIPv6(sb, opts.IfName)
		defer tx.birth.Cancel()
	}
	if err := tx.step(ctx, StepClaim, func() error { return h.claim(tx) }); err != nil {
		return nil, err
	}
	if err := drv.attach(ctx, tx); err != nil {
		return nil, errors.Join(err, tx.undo.run(ctx))
	}
	ep.Created = time.Now().UTC()
	if err := tx.step(ctx, StepRecord, func() error {
		return h.st.WriteEndpoint(ep.Network, ep.ID, &endpointRecord{Version: stateVersion, State: stateAttached, PID: os.Getpid(), Endpoint: *ep})
	}); err != nil {
		return nil, errors.Join(err, tx.undo.run(ctx))
	}
	h.log.Debug("attached", "network", ep.Network, "sandbox", ep.SandboxID, "addresses", ep.Addresses)
	return ep, nil
}

// claim creates the endpoint's record in state "attaching", exclusively:
// a second Attach of the same sandbox and interface fails with ErrExists.
func (h *Host) claim(tx *attachTx) error {
	rec := endpointRecord{Version: stateVersion, State: stateAttaching, PID: os.Getpid(), Endpoint: *tx.ep}
	if err := h.st.CreateEndpoint(tx.ep.Network, tx.ep.ID, &rec); err != nil {
		if errors.Is(err, ErrExists) {
			return fmt.Errorf("sandbox %q is already attached to network %q as %s: %w", tx.ep.SandboxID, tx.ep.Network, tx.ep.IfName, ErrExists)
		}
		return err
	}
	network, id := tx.ep.Network, tx.ep.ID
	tx.undo.push(func(context.Context) error { return h.st.RemoveEndpoint(network, id) })
	return nil
}

// checkInternalPorts refuses published ports on an internal network:
// nothing outside it may reach in, so a -p there could only mislead.
func checkInternalPorts(n Network, o *AttachOptions) error {
	if n.Internal && len(o.Ports) > 0 {
		return invalidf("network %q is internal: nothing outside it reaches its sandboxes, so ports cannot be published (%s)", n.Name, o.Ports[0])
	}
	return nil
}

// endpointID derives the endpoint's ID from what identifies it.
func endpointID(network, sandbox, ifName string) string {
	sum := sha256.Sum256([]byte(network + "\x00" + sandbox + "\x00" + ifName))
	return hex.EncodeToString(sum[:8])
}
