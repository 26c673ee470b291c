package publish

import (
	"context"
	"errors"
	"fmt"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

// Table is the port table: who publishes each host port (internal/state's
// Store is one).
type Table interface {
	// ClaimPorts takes ports for h (picking free host ports for mappings
	// without), checked with validate and against every port published;
	// record lists them in h's record before the table does.
	ClaimPorts(ctx context.Context, h nat.Holder, ports []nat.PortMapping, validate, record func([]nat.PortMapping) error) ([]nat.PortMapping, error)
	// ReleasePorts drops h's entries for ports.
	ReleasePorts(ctx context.Context, h nat.Holder, ports []nat.PortMapping) error
}

// Publisher publishes ports of the sandboxes of the bridge networks of one
// host namespace.
type Publisher struct {
	NS    *netns.NS   // the host namespace
	FW    nat.Backend // the firewall backend acting in NS
	Table Table
}

// Holder is who holds e's ports in the port table.
func Holder(n nat.Network, e nat.Endpoint) nat.Holder {
	return nat.Holder{Network: n.Name, Sandbox: e.Sandbox, Endpoint: e.ID}
}

// Add publishes e.Ports: host ports are claimed in the port table
// (conflicts are *nat.PortConflictError; record lists them in the
// endpoint's record first, so a Detach or GC after a crash knows which
// entries to drop), the bridge's route_localnet is turned on if one of
// them answers on 127.0.0.1, then the rules are added. It returns the
// ports claimed (host ports picked). On failure nothing is left behind:
// route_localnet goes back to what localnetElsewhere (another endpoint of
// n publishes on 127.0.0.1) wants.
func (p Publisher) Add(ctx context.Context, n nat.Network, e nat.Endpoint, record func([]nat.PortMapping) error, localnetElsewhere func() bool) ([]nat.PortMapping, error) {
	if len(e.Ports) == 0 {
		return nil, nil
	}
	h := Holder(n, e)
	claimed, err := p.Table.ClaimPorts(ctx, h, e.Ports, func(ps []nat.PortMapping) error {
		e := e
		e.Ports = ps
		return nat.Validate(n, e)
	}, record)
	if err != nil {
		return nil, err
	}
	e.Ports = claimed
	err = nil
	if nat.NeedsLocalnet(claimed) {
		err = p.SetLocalnet(ctx, n, true)
	}
	if err == nil {
		err = p.FW.AddEndpoint(ctx, n, e)
	}
	if err != nil {
		ctx := context.WithoutCancel(ctx)
		return nil, errors.Join(err,
			p.FW.RemoveEndpoint(ctx, n, e),
			p.Table.ReleasePorts(ctx, h, claimed),
			p.SetLocalnet(ctx, n, n.Subnet.IsValid() && localnetElsewhere()))
	}
	return claimed, nil
}

// Remove removes e's published ports, if it has any: their rules, then
// route_localnet if the last port answering on 127.0.0.1 goes (unless
// localnetElsewhere), then their entries in the port table. Idempotent.
func (p Publisher) Remove(ctx context.Context, n nat.Network, e nat.Endpoint, localnetElsewhere func() bool) error {
	if len(e.Ports) == 0 {
		return nil
	}
	if err := p.FW.RemoveEndpoint(ctx, n, e); err != nil {
		return err
	}
	if nat.NeedsLocalnet(e.Ports) && !(n.Subnet.IsValid() && localnetElsewhere()) {
		// The last port answering on 127.0.0.1 goes: so does route_localnet.
		if err := p.SetLocalnet(ctx, n, false); err != nil {
			return err
		}
	}
	return p.Table.ReleasePorts(ctx, Holder(n, e), e.Ports)
}

// SetLocalnet turns the network's bridge's route_localnet on or off
// (bridge.SetLocalnet).
func (p Publisher) SetLocalnet(ctx context.Context, n nat.Network, on bool) error {
	if err := bridge.SetLocalnet(ctx, p.NS, n.Bridge, on); err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return nil
}
