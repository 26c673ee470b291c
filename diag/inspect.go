package diag

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// Report is everything Inspect found about one sandbox namespace.
type Report struct {
	NetNS      NetNS        `json:"netns"`
	Links      []Link       `json:"links"`
	Addresses  []Address    `json:"addresses"`
	Routes     []Route      `json:"routes"`
	Neighbours []Neighbour  `json:"neighbours"`
	ResolvConf ResolvConf   `json:"resolvConf"`
	Sockets    []Socket     `json:"sockets"`
	Attached   []Attachment `json:"attached"`
	// Errors lists what could not be read; the rest of the report stands.
	Errors []string `json:"errors,omitempty"`
}

// NetNS identifies the namespace: what `ls -l /proc/PID/ns/net` shows as
// net:[INODE], the file it was opened from, its name under /run/netns.
type NetNS struct {
	Name  string `json:"name,omitempty"`
	Path  string `json:"path"`
	Inode uint64 `json:"inode"`
}

// Link is one network interface, as `ip -d link` shows it.
type Link struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	Type  string `json:"type"`
	// Up is the administrative state (IFF_UP); State the operational one
	// (up, down, lowerlayerdown, unknown...).
	Up    bool   `json:"up"`
	State string `json:"state"`
	MTU   int    `json:"mtu"`
	MAC   string `json:"mac,omitempty"`
	// PeerIndex is a veth's peer's ifindex, in the namespace PeerNetNSID
	// names (-1: this namespace); the `@if7` of `ip link`.
	PeerIndex   int `json:"peerIndex,omitempty"`
	PeerNetNSID int `json:"peerNetnsID,omitempty"`
	// Master is the bridge (or bond...) this link is a port of.
	Master string `json:"master,omitempty"`
}

// Address is one address on a link.
type Address struct {
	Link   string       `json:"link"`
	Prefix netip.Prefix `json:"prefix"`
	Scope  string       `json:"scope"`
}

// Route is one route, from any table.
type Route struct {
	Table    string       `json:"table"`
	Type     string       `json:"type,omitempty"`
	Dst      netip.Prefix `json:"dst"`
	Gateway  netip.Addr   `json:"gateway,omitzero"`
	Dev      string       `json:"dev,omitempty"`
	Src      netip.Addr   `json:"src,omitzero"`
	Scope    string       `json:"scope,omitempty"`
	Protocol string       `json:"protocol,omitempty"`
	Metric   int          `json:"metric,omitempty"`
	OnLink   bool         `json:"onlink,omitempty"`
	LinkDown bool         `json:"linkdown,omitempty"`
}

// Neighbour is one ARP / NDP cache entry.
type Neighbour struct {
	Link  string     `json:"link"`
	IP    netip.Addr `json:"ip"`
	MAC   string     `json:"mac,omitempty"`
	State string     `json:"state"`
}

// Attachment is where sandnet attached the sandbox: one endpoint.
type Attachment struct {
	Network    string                `json:"network"`
	Driver     sandnet.Driver        `json:"driver"`
	EndpointID string                `json:"endpointID"`
	SandboxID  string                `json:"sandboxID"`
	IfName     string                `json:"ifName,omitempty"`
	HostIfName string                `json:"hostIfName,omitempty"`
	Bridge     string                `json:"bridge,omitempty"`
	Addresses  []netip.Prefix        `json:"addresses,omitempty"`
	Gateway    netip.Addr            `json:"gateway,omitzero"`
	Gateway6   netip.Addr            `json:"gateway6,omitzero"`
	Hostname   string                `json:"hostname,omitempty"`
	Aliases    []string              `json:"aliases,omitempty"`
	Ports      []sandnet.PortMapping `json:"ports,omitempty"`
	Endpoint   *sandnet.Endpoint     `json:"-"`
}

// Inspect describes the sandbox namespace sb and, when host is not nil,
// the endpoints host recorded for it. What cannot be read is listed in
// Report.Errors; the error return is for a namespace that cannot be looked
// at at all.
//
// Equivalent to: ip -n SB -d link; ip -n SB addr; ip -n SB route show table
// all; ip -n SB neigh; cat /etc/netns/SB/resolv.conf; ip netns exec SB ss -lntu
func Inspect(ctx context.Context, sb *netns.NS, host *sandnet.Host) (*Report, error) {
	nl, err := sb.Netlink()
	if err != nil {
		return nil, err
	}
	r := &Report{NetNS: NetNS{Name: sb.Name(), Path: sb.Path(), Inode: sb.Inode()}}
	note := func(what string, err error) {
		if err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", what, err))
		}
	}
	names := map[int]string{}
	links, err := nlwrap.Retry(func() ([]netlink.Link, error) { return nl.LinkList() })
	if err != nil {
		return nil, fmt.Errorf("listing links in %s: %w", sb, err)
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		r.Links = append(r.Links, linkOf(l, names))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.Addresses, err = addresses(nl, names)
	note("addresses", err)
	r.Routes, err = routes(nl, names)
	note("routes", err)
	r.Neighbours, err = neighbours(nl, names)
	note("neighbours", err)
	r.ResolvConf, err = ReadResolvConf(sb)
	note("resolv.conf", err)
	r.Sockets, err = ListeningSockets(sb)
	note("sockets", err)
	if host != nil {
		eps, err := host.EndpointsOf(sb)
		note("endpoints", err)
		for _, ep := range eps {
			r.Attached = append(r.Attached, attachmentOf(ep))
		}
	}
	return r, nil
}

func attachmentOf(ep *sandnet.Endpoint) Attachment {
	return Attachment{
		Network: ep.Network, Driver: ep.Driver, EndpointID: ep.ID, SandboxID: ep.SandboxID,
		IfName: ep.IfName, HostIfName: ep.HostIfName, Bridge: ep.Bridge,
		Addresses: ep.Addresses, Gateway: ep.Gateway, Gateway6: ep.Gateway6,
		Hostname: ep.Hostname, Aliases: ep.Aliases, Ports: ep.Ports, Endpoint: ep,
	}
}

func linkOf(l netlink.Link, names map[int]string) Link {
	a := l.Attrs()
	out := Link{
		Index: a.Index, Name: a.Name, Type: l.Type(), Up: a.Flags&net.FlagUp != 0,
		State: a.OperState.String(), MTU: a.MTU,
	}
	if len(a.HardwareAddr) > 0 {
		out.MAC = a.HardwareAddr.String()
	}
	if _, ok := l.(*netlink.Veth); ok {
		out.PeerIndex = a.ParentIndex
		out.PeerNetNSID = a.NetNsID
	}
	if a.MasterIndex != 0 {
		out.Master = names[a.MasterIndex]
	}
	return out
}

func addresses(nl *netlink.Handle, names map[int]string) ([]Address, error) {
	addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	var out []Address
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, Address{Link: names[a.LinkIndex], Prefix: netip.PrefixFrom(ip.Unmap(), ones), Scope: scopeName(netlink.Scope(a.Scope))})
	}
	return out, nil
}

func routes(nl *netlink.Handle, names map[int]string) ([]Route, error) {
	rs, err := nlwrap.Retry(func() ([]netlink.Route, error) {
		return nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, r := range rs {
		out = append(out, routeOf(r, names))
	}
	sort.SliceStable(out, func(i, j int) bool { return tableOrder(out[i].Table) < tableOrder(out[j].Table) })
	return out, nil
}

func routeOf(r netlink.Route, names map[int]string) Route {
	out := Route{
		Table: tableName(r.Table), Type: routeType(r.Type), Dev: names[r.LinkIndex],
		Scope: scopeName(r.Scope), Protocol: r.Protocol.String(), Metric: r.Priority,
		OnLink: r.Flags&unix.RTNH_F_ONLINK != 0, LinkDown: r.Flags&unix.RTNH_F_LINKDOWN != 0,
	}
	if r.Dst != nil {
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			ones, _ := r.Dst.Mask.Size()
			out.Dst = netip.PrefixFrom(a.Unmap(), ones)
		}
	} else if r.Family == unix.AF_INET6 {
		out.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	} else {
		out.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	if a, ok := netip.AddrFromSlice(r.Gw); ok {
		out.Gateway = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(r.Src); ok {
		out.Src = a.Unmap()
	}
	return out
}

func neighbours(nl *netlink.Handle, names map[int]string) ([]Neighbour, error) {
	ns, err := nlwrap.Retry(func() ([]netlink.Neigh, error) { return nl.NeighList(0, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	var out []Neighbour
	for _, n := range ns {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || n.State == netlink.NUD_NOARP {
			continue
		}
		nb := Neighbour{Link: names[n.LinkIndex], IP: ip.Unmap(), State: neighState(n.State)}
		if len(n.HardwareAddr) > 0 {
			nb.MAC = n.HardwareAddr.String()
		}
		out = append(out, nb)
	}
	return out, nil
}

func neighState(s int) string {
	for _, st := range []struct {
		bit  int
		name string
	}{
		{netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"}, {netlink.NUD_DELAY, "DELAY"},
		{netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_FAILED, "FAILED"}, {netlink.NUD_INCOMPLETE, "INCOMPLETE"},
		{netlink.NUD_PERMANENT, "PERMANENT"}, {netlink.NUD_NOARP, "NOARP"},
	} {
		if s&st.bit != 0 {
			return st.name
		}
	}
	return "NONE"
}

func scopeName(s netlink.Scope) string {
	switch s {
	case netlink.SCOPE_UNIVERSE:
		return "global"
	case netlink.SCOPE_LINK:
		return "link"
	case netlink.SCOPE_HOST:
		return "host"
	case netlink.SCOPE_SITE:
		return "site"
	case netlink.SCOPE_NOWHERE:
		return "nowhere"
	}
	return fmt.Sprint(int(s))
}

func tableName(t int) string {
	switch t {
	case unix.RT_TABLE_MAIN:
		return "main"
	case unix.RT_TABLE_LOCAL:
		return "local"
	case unix.RT_TABLE_DEFAULT:
		return "default"
	}
	return fmt.Sprint(t)
}

func tableOrder(t string) int {
	switch t {
	case "main":
		return 0
	case "local":
		return 2
	}
	return 1
}

func routeType(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_MULTICAST:
		return "multicast"
	case unix.RTN_ANYCAST:
		return "anycast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	}
	return fmt.Sprint(t)
}
