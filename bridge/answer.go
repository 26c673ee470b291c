package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// Answer makes the bridge br answer address resolution for the sandbox
// behind its port: proxy_arp_wifi on port, a static FDB entry for the
// sandbox's mac on port, and a permanent entry on the bridge device for
// each of the sandbox's addrs (see proxy.go). Each replaces what is there.
// br and port are links of ns that the caller looked up through h.
//
// Equivalent to: ip link set dev PORT type bridge_slave proxy_arp_wifi on;
// bridge fdb replace MAC dev PORT master static;
// ip neigh replace ADDR lladdr MAC dev BR nud permanent
func Answer(ctx context.Context, ns *netns.NS, h *netlink.Handle, br, port netlink.Link, mac net.HardwareAddr, addrs []netip.Addr) error {
	if err := SetPortFlagLink(ctx, ns, h, port, ProxyARPWiFi, true); err != nil {
		return err
	}
	if err := AddFDBIndex(ctx, ns, h, port.Attrs().Index, port.Attrs().Name, mac); err != nil {
		return err
	}
	dev := iface.Wrap(ns, h, br)
	for _, a := range addrs {
		if err := dev.SetNeighbor(ctx, a, mac); err != nil {
			return err
		}
	}
	return nil
}

// Forget removes the bridge device's entries for addrs, the addresses of a
// sandbox that leaves (its port's flag and FDB entry go with the port). It
// deletes by address, without reading the table (a pass over every
// sandbox's entries): the caller makes sure the addresses are still the
// leaving sandbox's. A bridge or entry that is gone is success.
//
// Equivalent to: ip neigh del ADDR dev BR
func Forget(ctx context.Context, ns *netns.NS, bridgeName string, addrs []netip.Addr) error {
	dev, err := iface.Open(ns, bridgeName)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range addrs {
		errs = append(errs, dev.DelNeighbor(ctx, a, nil))
	}
	return errors.Join(errs...)
}

// View is what a bridge answers address resolution with, read once for
// all its ports: the bridge device's neighbour table, and the flags and
// static FDB entries of its ports. Checking many sandboxes against one
// View costs three netlink dumps in all, instead of three per sandbox.
type View struct {
	// Link is the bridge.
	Link netlink.Link
	// Neighbors is the bridge device's neighbour table.
	Neighbors map[netip.Addr]iface.Neighbor
	ports     map[string]viewPort
}

type viewPort struct {
	flags  netlink.Protinfo
	static []net.HardwareAddr
}

// ReadView reads the View of the bridge called name in ns through h, a
// handle bound to ns. A bridge that is not there is ErrNotFound.
//
// Equivalent to: ip neigh show dev BR; bridge -d link show; bridge fdb show br BR
func ReadView(ns *netns.NS, h *netlink.Handle, name string) (*View, error) {
	br, err := lookup(h, name)
	if err != nil {
		return nil, err
	}
	v := &View{Link: br, ports: map[string]viewPort{}}
	if v.Neighbors, err = iface.Wrap(ns, h, br).Neighbors(); err != nil {
		return nil, err
	}
	names, err := portFlags(ns, br.Index, v.ports)
	if err != nil {
		return nil, fmt.Errorf("reading the ports of bridge %s in %s: %w", name, ns, err)
	}
	fdb, err := nlwrap.Retry(func() ([]netlink.Neigh, error) { return h.NeighList(0, unix.AF_BRIDGE) })
	if err != nil {
		return nil, fmt.Errorf("listing fdb entries of bridge %s in %s: %w", name, ns, err)
	}
	for _, n := range fdb {
		port, ok := names[n.LinkIndex]
		if ok && n.MasterIndex == br.Index && staticEntry(n) {
			p := v.ports[port]
			p.static = append(p.static, n.HardwareAddr)
			v.ports[port] = p
		}
	}
	return v, nil
}

// Flags returns the flags of the bridge's port called port; ok is false
// when it is no port of the bridge.
func (v *View) Flags(port string) (flags netlink.Protinfo, ok bool) {
	p, ok := v.ports[port]
	return p.flags, ok
}

// HasStaticFDB reports whether the bridge's forwarding database holds a
// static entry for mac on the port called port.
func (v *View) HasStaticFDB(port string, mac net.HardwareAddr) bool {
	for _, m := range v.ports[port].static {
		if bytes.Equal(m, mac) {
			return true
		}
	}
	return false
}

// staticEntry reports whether n, an entry of a bridge's FDB dumped with its
// master index, is a static one on no VLAN (the kernel lists them with
// NUD_NOARP; the bridge's own, local ones, with NUD_PERMANENT).
func staticEntry(n netlink.Neigh) bool {
	return n.MasterIndex != 0 && n.State&netlink.NUD_NOARP != 0 && n.Vlan == 0
}

// portFlags reads, with one dump of the links of ns, the flags of every
// port of the bridge with index master into ports, by name; it returns the
// names by index.
func portFlags(ns *netns.NS, master int, ports map[string]viewPort) (map[int]string, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	msgs, err := execute(ns, req, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, m := range msgs {
		info := nl.DeserializeIfInfomsg(m)
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			return nil, err
		}
		var (
			name  string
			of    int
			slave []byte
		)
		for _, a := range attrs {
			switch a.Attr.Type & nlaTypeMask {
			case unix.IFLA_IFNAME:
				name = string(bytes.TrimRight(a.Value, "\x00"))
			case unix.IFLA_MASTER:
				if len(a.Value) >= 4 {
					of = int(native.Uint32(a.Value))
				}
			case unix.IFLA_LINKINFO:
				infos, err := nl.ParseRouteAttr(a.Value)
				if err != nil {
					return nil, err
				}
				for _, i := range infos {
					if i.Attr.Type&nlaTypeMask == nl.IFLA_INFO_SLAVE_DATA {
						slave = i.Value
					}
				}
			}
		}
		if of != master || name == "" {
			continue
		}
		data, err := nl.ParseRouteAttr(slave)
		if err != nil {
			return nil, err
		}
		names[int(info.Index)] = name
		ports[name] = viewPort{flags: protinfo(data)}
	}
	return names, nil
}

var native = nl.NativeEndian()

// Lack is one thing that is missing or wrong: Name says what, Detail how.
// A Foreign one is another's object where sandnet's should be: nothing
// to repair.
type Lack struct {
	Name, Detail string
	Foreign      bool
}

// CheckAnswer reports what is missing of what Answer set for the sandbox
// behind port (its MAC mac, nil if unknown, and its addrs): the bridge
// device's entries and, if port is a port of the bridge, its
// proxy_arp_wifi flag and static FDB entry.
func (v *View) CheckAnswer(port string, mac net.HardwareAddr, addrs []netip.Addr) []Lack {
	var ls []Lack
	for _, a := range addrs {
		if d := v.Neighbors[a].Lacks(mac); d != "" {
			ls = append(ls, Lack{Name: a.String() + " dev " + v.Link.Attrs().Name, Detail: d})
		}
	}
	if flags, ok := v.Flags(port); ok {
		if !flags.ProxyArpWiFi {
			ls = append(ls, Lack{Name: port + " proxy_arp_wifi", Detail: "is off"})
		}
		if mac != nil && !v.HasStaticFDB(port, mac) {
			ls = append(ls, Lack{Name: port, Detail: fmt.Sprintf("no static FDB entry for %s", mac)})
		}
	}
	return ls
}

// CheckPort reports what is wrong with the port called port of the bridge
// called name in ns, looked up through h (a handle bound to ns): missing
// from ns, down, or not a port of the bridge (broken is true for those),
// or without one of flags. v is the bridge's View, nil if it was not read
// (the bridge is gone, or nothing else needed it).
//
// Equivalent to: ip link show PORT; bridge -d link show dev PORT
func CheckPort(ns *netns.NS, h *netlink.Handle, v *View, name, port string, flags []PortFlag) (lacks []Lack, broken bool) {
	link, err := h.LinkByName(port)
	if err != nil {
		return []Lack{{Name: port, Detail: fmt.Sprintf("missing from %s", ns)}}, true
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		lacks, broken = append(lacks, Lack{Name: port, Detail: "is down"}), true
	}
	if v == nil || link.Attrs().MasterIndex != v.Link.Attrs().Index {
		if br, err := h.LinkByName(name); err != nil || link.Attrs().MasterIndex != br.Attrs().Index {
			lacks, broken = append(lacks, Lack{Name: port, Detail: "is not a port of bridge " + name}), true
		}
	}
	var on netlink.Protinfo // not a port (any more): every flag is off
	if v != nil {
		on, _ = v.Flags(port)
	}
	for _, f := range flags {
		if !f.In(on) {
			lacks = append(lacks, Lack{Name: port + " " + string(f), Detail: fmt.Sprintf("is off (bridge link set dev %s %s on)", port, f)})
		}
	}
	return lacks, broken
}

// AnswerSandbox is Answer for the sandbox whose link sb is behind port,
// with sb's MAC and addrs, after giving the sandbox a permanent entry to
// the bridge's MAC for each of gateways (the bridge's addresses), so it
// never resolves them. br and port are links of ns looked up through h.
// Each entry replaces what is there.
//
// Equivalent to: ip -n SBX neigh replace GW lladdr BRMAC dev IF nud permanent; then Answer's
func AnswerSandbox(ctx context.Context, ns *netns.NS, h *netlink.Handle, br, port netlink.Link, sb *iface.Link, addrs, gateways []netip.Addr) error {
	for _, gw := range gateways {
		if err := sb.SetNeighbor(ctx, gw, br.Attrs().HardwareAddr); err != nil {
			return err
		}
	}
	return Answer(ctx, ns, h, br, port, sb.MAC(), addrs)
}

// CheckGateways reports the gateways whose permanent entry, to the
// bridge's MAC, the sandbox sb (nil: gone) lacks on its interface ifName
// (gone: nothing to report).
//
// Equivalent to: ip -n SBX neigh show dev IF
func (v *View) CheckGateways(sb *netns.NS, ifName string, gateways []netip.Addr) ([]Lack, error) {
	if sb == nil || len(gateways) == 0 {
		return nil, nil
	}
	have, err := iface.Neighbors(sb, ifName)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ls []Lack
	for _, gw := range gateways {
		if d := have[gw].Lacks(v.Link.Attrs().HardwareAddr); d != "" {
			ls = append(ls, Lack{Name: "gateway " + gw.String(), Detail: d})
		}
	}
	return ls, nil
}

// CheckDevice reports what is wrong with the bridge called name in ns:
// missing, another kind of link (Foreign), down, or without one of addrs.
//
// Equivalent to: ip -d addr show NAME
func CheckDevice(ns *netns.NS, name string, addrs []netip.Prefix) ([]Lack, error) {
	link, err := iface.Open(ns, name)
	if err != nil {
		return []Lack{{Name: name, Detail: fmt.Sprintf("missing from %s", ns)}}, nil
	}
	var ls []Lack
	if kind := link.Kind(); kind != "bridge" {
		ls = append(ls, Lack{Name: name, Detail: "is a " + kind + ", not a bridge", Foreign: true})
	}
	if !link.IsUp() {
		ls = append(ls, Lack{Name: name, Detail: "is down"})
	}
	missing, _, err := link.Lacks(addrs, nil)
	for _, p := range missing {
		ls = append(ls, Lack{Name: p.String(), Detail: "missing from bridge " + name})
	}
	return ls, err
}
