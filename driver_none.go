package sandnet

import (
	"context"
	"net/netip"

	"github.com/sandnet/sandnet/iface"
)

// noneDriver leaves the sandbox with loopback only, up.
type noneDriver struct{ noParts }

// DriverNone leaves a sandbox with loopback only.
const DriverNone Driver = "none"

func (noneDriver) traits() traits { return traits{} }

func (noneDriver) attach(ctx context.Context, tx *attachTx) error {
	tx.ep.IfName = "lo"
	return tx.step(ctx, StepConfigure, func() error {
		if err := iface.LoUp(ctx, tx.sb); err != nil {
			return err
		}
		tx.ep.Addresses = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}
		return nil
	})
}
