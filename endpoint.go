package sandnet

import (
	"net/netip"
	"time"

	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/nat"
)

// PortMapping publishes a sandbox port on the host; see ParsePort.
type PortMapping = nat.PortMapping

// Route is one route the sandbox got (Dev is empty: the endpoint's interface).
type Route = iface.Route

// Endpoint is one sandbox's attachment to one network: everything a user
// would print. It is JSON-serialisable and recorded in the state dir.
type Endpoint struct {
	// ID is derived from (network, sandbox ID, interface): stable and unique on a host.
	ID        string `json:"id"`
	Network   string `json:"network"`
	Driver    Driver `json:"driver"`
	SandboxID string `json:"sandboxID"`
	// NetNS is the path of the sandbox's namespace; NetNSInode identifies it.
	NetNS      string `json:"netns"`
	NetNSInode uint64 `json:"netnsInode"`
	// IfName is the interface inside the sandbox, HostIfName its peer on the host side.
	IfName     string `json:"ifName,omitempty"`
	HostIfName string `json:"hostIfName,omitempty"`
	// Bridge is the bridge the host side is attached to.
	Bridge    string         `json:"bridge,omitempty"`
	MAC       string         `json:"mac,omitempty"`
	MTU       int            `json:"mtu,omitempty"`
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	Gateway   netip.Addr     `json:"gateway,omitzero"`
	Gateway6  netip.Addr     `json:"gateway6,omitzero"`
	Routes    []Route        `json:"routes,omitempty"`
	Hostname  string         `json:"hostname,omitempty"`
	Aliases   []string       `json:"aliases,omitempty"`
	// DNS holds the name servers, search domains and options the sandbox got.
	DNS        []netip.Addr `json:"dns,omitempty"`
	DNSSearch  []string     `json:"dnsSearch,omitempty"`
	DNSOptions []string     `json:"dnsOptions,omitempty"`
	// ResolvConf and Hosts are the files written for the sandbox.
	ResolvConf []string      `json:"resolvConf,omitempty"`
	Hosts      []string      `json:"hosts,omitempty"`
	Ports      []PortMapping `json:"ports,omitempty"`
	Created    time.Time     `json:"created"`
}

// Addr returns the endpoint's first address of the family asked for.
func (e *Endpoint) Addr(v6 bool) netip.Addr {
	for _, p := range e.Addresses {
		if p.Addr().Is6() == v6 {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// addrsOf returns the endpoint's addresses without their prefix lengths.
func addrsOf(ep *Endpoint) []netip.Addr {
	var addrs []netip.Addr
	for _, p := range ep.Addresses {
		addrs = append(addrs, p.Addr())
	}
	return addrs
}
