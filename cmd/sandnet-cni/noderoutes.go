package main

import (
	"context"
	"net/netip"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/iface"
)

// nodeRoute is one entry of "nodeRoutes": a route in the node's namespace to
// another node's pod subnet via that node (host-gw), so a routed setup needs
// nothing besides the conflist.
type nodeRoute struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via"`
}

// ensureNodeRoutes adds the configured routes to the node that are not
// there yet. They are the node's configuration, like the bridge: DEL and GC
// leave them (`ip route del DST` removes one). A different route to the
// same destination is a configuration error.
//
// Equivalent to: ip route add DST via VIA (for each that is missing)
func ensureNodeRoutes(ctx context.Context, h *sandnet.Host, routes []nodeRoute) error {
	for _, r := range routes {
		if !r.Dst.IsValid() || !r.Via.IsValid() || r.Dst.Addr().Is4() != r.Via.Is4() {
			return invalidConf("nodeRoutes: %s via %s: want a destination prefix and a gateway of its family", r.Dst, r.Via)
		}
		if err := iface.AddRoute(ctx, h.NS(), iface.Route{Dst: r.Dst.Masked(), Via: r.Via}); err != nil {
			return err
		}
	}
	return nil
}
