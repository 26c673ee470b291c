package main

import (
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/netns"
)

// buildResult describes the endpoint the way the bridge plugin does, so
// CHECK and chained plugins (portmap, bandwidth, tuning) find what they
// look for: the bridge, the host end and the sandbox end (with its MAC and
// sandbox path) as interfaces; each address with its gateway, pointing at
// the sandbox end; the routes; the DNS settings. Given a prevResult (sandnet
// chained after another plugin), sandnet's entries are added to it.
func buildResult(h *sandnet.Host, ep *sandnet.Endpoint, netnsPath string, prev types.Result) (*current.Result, error) {
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	if prev != nil {
		p, err := current.NewResultFromResult(prev)
		if err != nil {
			return nil, err
		}
		res = p
	}
	nl, err := h.NS().Netlink()
	if err != nil {
		return nil, err
	}
	hostMAC := func(name string) string {
		if l, err := nl.LinkByName(name); err == nil {
			return l.Attrs().HardwareAddr.String()
		}
		return ""
	}
	if ep.Bridge != "" {
		res.Interfaces = append(res.Interfaces, &current.Interface{Name: ep.Bridge, Mac: hostMAC(ep.Bridge)})
	}
	if ep.HostIfName != "" {
		res.Interfaces = append(res.Interfaces, &current.Interface{Name: ep.HostIfName, Mac: hostMAC(ep.HostIfName)})
	}
	mac := ep.MAC
	if mac == "" {
		mac = sandboxMAC(netnsPath, ep.IfName)
	}
	res.Interfaces = append(res.Interfaces, &current.Interface{Name: ep.IfName, Mac: mac, Mtu: ep.MTU, Sandbox: netnsPath})
	idx := len(res.Interfaces) - 1
	for _, p := range ep.Addresses {
		gw := ep.Gateway
		if p.Addr().Is6() {
			gw = ep.Gateway6
		}
		ipc := &current.IPConfig{Interface: current.Int(idx), Address: *ipNet(p)}
		if gw.IsValid() {
			ipc.Gateway = gw.AsSlice()
		}
		res.IPs = append(res.IPs, ipc)
	}
	for _, r := range ep.Routes {
		rt := &types.Route{Dst: *ipNet(r.Dst)}
		if r.Via.IsValid() {
			rt.GW = r.Via.AsSlice()
		}
		res.Routes = append(res.Routes, rt)
	}
	for _, s := range ep.DNS {
		res.DNS.Nameservers = append(res.DNS.Nameservers, s.String())
	}
	res.DNS.Search = append(res.DNS.Search, ep.DNSSearch...)
	res.DNS.Options = append(res.DNS.Options, ep.DNSOptions...)
	return res, nil
}

// sandboxMAC reads the MAC of the sandbox's interface (for an endpoint
// whose record has none: no IPv4 address to derive it from).
func sandboxMAC(netnsPath, ifName string) string {
	ns, err := netns.Open(netnsPath)
	if err != nil {
		return ""
	}
	defer ns.Close()
	nl, err := ns.Netlink()
	if err != nil {
		return ""
	}
	l, err := nl.LinkByName(ifName)
	if err != nil {
		return ""
	}
	return l.Attrs().HardwareAddr.String()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
