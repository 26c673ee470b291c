package sandnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
)

// The named steps of Attach, in order; a StepError carries one of them.
const (
	StepOpenSandbox = "opening sandbox namespace"
	StepNetwork     = "ensuring network"
	StepClaim       = "claiming endpoint"
	StepAddress     = "allocating address"
	StepLink        = "creating interface"
	StepConfigure   = "configuring sandbox interface"
	StepDNS         = "setting up DNS"
	StepPorts       = "publishing ports"
	StepRecord      = "recording endpoint"
)

// testHookStep, when set (by tests), runs before each named step and can
// make it fail.
var testHookStep func(step string) error

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
}

func (tx *attachTx) step(ctx context.Context, name string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return tx.fail(name, err)
	}
	if testHookStep != nil {
		if err := testHookStep(name); err != nil {
			return tx.fail(name, err)
		}
	}
	if err := fn(); err != nil {
		return tx.fail(name, err)
	}
	return nil
}

func (tx *attachTx) fail(step string, err error) error {
	return &StepError{Op: "attach", Object: fmt.Sprintf("sandbox %q to network %q", tx.ep.SandboxID, tx.ep.Network), Step: step, Err: err}
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
		return nil, tx.fail("checking options", err)
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
	tx.net = &st.rec
	ep.Driver = st.rec.Network.Driver
	drv, err := driverFor(ep.Driver)
	if err != nil {
		return nil, tx.fail(StepNetwork, err)
	}
	if h.ns.Equal(sb) && !drv.traits().hostNS {
		return nil, tx.fail(StepNetwork, invalidf("the sandbox is the host namespace itself; only the host driver attaches it"))
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

func checkOptions(network string, o *AttachOptions) error {
	if err := checkName("sandbox", o.SandboxID); err != nil {
		return err
	}
	if err := ifname.Check(o.IfName); err != nil {
		return err
	}
	if o.IP.IsValid() && !o.IP.Is4() {
		return invalidf("static IP %s is not IPv4 (use IP6)", o.IP)
	}
	if o.IP6.IsValid() && (!o.IP6.Is6() || o.IP6.Is4In6()) {
		return invalidf("static IP6 %s is not IPv6", o.IP6)
	}
	if o.MAC != nil && (len(o.MAC) != 6 || o.MAC[0]&1 == 1) {
		return invalidf("MAC %s is not a unicast Ethernet address", o.MAC)
	}
	for _, name := range append([]string{o.Hostname}, o.Aliases...) {
		if name != "" {
			if err := checkDNSName(name); err != nil {
				return err
			}
		}
	}
	return checkFileOptions(o)
}

// endpointID derives the endpoint's ID from what identifies it.
func endpointID(network, sandbox, ifName string) string {
	sum := sha256.Sum256([]byte(network + "\x00" + sandbox + "\x00" + ifName))
	return hex.EncodeToString(sum[:8])
}
