package sandnet

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/internal/nlwrap"
)

// hostDriver shares the host namespace: Attach reports the host's addresses
// and default gateways and changes nothing.
type hostDriver struct{ noParts }

// DriverHost shares the host's namespace: Attach changes nothing and
// reports the host's addresses and gateways.
const DriverHost Driver = "host"

func (hostDriver) traits() traits { return traits{hostNS: true} }

func (hostDriver) attach(ctx context.Context, tx *attachTx) error {
	return tx.step(ctx, StepConfigure, func() error {
		if !tx.h.ns.Equal(tx.sb) {
			return invalidf("host driver: the sandbox namespace %s is not the host namespace %s (run the sandbox in the host's namespace)", tx.sb, tx.h.ns)
		}
		nl, err := tx.h.ns.Netlink()
		if err != nil {
			return err
		}
		addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return nl.AddrList(nil, netlink.FAMILY_ALL) })
		if err != nil {
			return fmt.Errorf("listing host addresses: %w", err)
		}
		tx.ep.IfName = ""
		for _, a := range addrs {
			if a.Scope != int(netlink.SCOPE_UNIVERSE) {
				continue
			}
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ones, _ := a.Mask.Size()
			tx.ep.Addresses = append(tx.ep.Addresses, netip.PrefixFrom(ip.Unmap(), ones))
		}
		routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return nl.RouteList(nil, netlink.FAMILY_ALL) })
		if err != nil {
			return fmt.Errorf("listing host routes: %w", err)
		}
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
				gw, _ := netip.AddrFromSlice(r.Gw)
				gw = gw.Unmap()
				if gw.Is4() && !tx.ep.Gateway.IsValid() {
					tx.ep.Gateway = gw
				} else if gw.Is6() && !tx.ep.Gateway6.IsValid() {
					tx.ep.Gateway6 = gw
				}
			}
		}
		return nil
	})
}
