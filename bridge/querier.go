package bridge

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

// The multicast querier of a bridge.
//
// A bridge snoops the IGMP and MLD reports its ports send (multicast
// snooping, on by default) but, until some querier is on the link, it
// floods every multicast frame to every port anyway: it cannot tell an
// unanswered group from a forgotten one. With the bridge itself as the
// querier, a frame for a group goes only to the ports whose sandboxes
// joined it, and the reports themselves only to the bridge:
//
//   - an IPv6 neighbour solicitation goes to the solicited-node group of
//     the address asked for, which only the sandbox holding that address
//     has joined: it reaches that one port, also for addresses set by hand;
//   - MLD reports (a sandbox's joins) reach no other sandbox;
//   - a group nobody joined (a router solicitation with no router on the
//     link) and the link-local IPv4 groups (224.0.0.0/24: mDNS, VRRP) are
//     flooded as before.
//
// The querier sends a general query to all ports every 125 s, and the
// bridge enforces snooping only once the first query's answers are in
// (the query response interval, 10 s): until then it floods.

// SetMulticastQuerier makes the bridge called name the IGMP and MLD querier
// of its link (or stops it).
//
// Equivalent to: ip link set dev NAME type bridge mcast_querier 1
func SetMulticastQuerier(ctx context.Context, ns *netns.NS, name string, on bool) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	br, err := lookup(h, name)
	if err != nil {
		return err
	}
	v := uint8(0)
	if on {
		v = 1
	}
	explain.Say(ctx, "%s", ns.Shell(fmt.Sprintf("ip link set dev %s type bridge mcast_querier %d", name, v)))
	// The netlink library has no field for it: one RTM_NEWLINK by hand.
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(br.Index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_MCAST_QUERIER, nl.Uint8Attr(v))
	req.AddData(info)
	if _, err := execute(ns, req, 0); err != nil {
		return fmt.Errorf("setting mcast_querier %d on bridge %s in %s: %w", v, name, ns, err)
	}
	return nil
}

// MulticastQuerier reports whether the bridge called name is its link's
// multicast querier and snoops multicast (both are needed for multicast
// to go only where it was asked for).
//
// Equivalent to: ip -d link show NAME (mcast_snooping 1 mcast_querier 1)
func MulticastQuerier(ns *netns.NS, name string) (bool, error) {
	h, err := ns.Netlink()
	if err != nil {
		return false, err
	}
	br, err := lookup(h, name)
	if err != nil {
		return false, err
	}
	data, err := linkData(ns, br.Index, false)
	var querier, snooping bool
	for _, d := range data {
		switch d.Attr.Type {
		case nl.IFLA_BR_MCAST_QUERIER:
			querier = len(d.Value) > 0 && d.Value[0] == 1
		case nl.IFLA_BR_MCAST_SNOOPING:
			snooping = len(d.Value) > 0 && d.Value[0] == 1
		}
	}
	if err != nil {
		return false, fmt.Errorf("reading the multicast settings of bridge %s in %s: %w", name, ns, err)
	}
	return querier && snooping, nil
}

// PortState returns the STP state of the bridge port with index index in
// ns: disabled, listening, learning, forwarding or blocking; a link that is
// no bridge port is an error wrapping ErrNotFound.
//
// Equivalent to: bridge link show dev PORT
func PortState(ns *netns.NS, index int) (string, error) {
	data, err := linkData(ns, index, true)
	if err != nil {
		return "", fmt.Errorf("reading the port state of link %d in %s: %w", index, ns, err)
	}
	for _, d := range data {
		if d.Attr.Type == nl.IFLA_BRPORT_STATE && len(d.Value) > 0 {
			if s := int(d.Value[0]); s < len(portStates) {
				return portStates[s], nil
			}
			return fmt.Sprintf("state %d", d.Value[0]), nil
		}
	}
	return "", fmt.Errorf("link %d in %s is not a bridge port: %w", index, ns, ErrNotFound)
}

// The bridge port states (IFLA_BRPORT_STATE, include/uapi/linux/if_bridge.h).
var portStates = []string{"disabled", "listening", "learning", "forwarding", "blocking"}

// linkData returns the IFLA_INFO_DATA (a bridge's own settings) or, with
// slave, the IFLA_INFO_SLAVE_DATA (its settings as a bridge port) of the
// link with index index in ns: what `ip -d link show` prints, including
// attributes the netlink library does not parse. One RTM_GETLINK.
func linkData(ns *netns.NS, index int, slave bool) ([]syscall.NetlinkRouteAttr, error) {
	want := uint16(nl.IFLA_INFO_DATA)
	if slave {
		want = nl.IFLA_INFO_SLAVE_DATA
	}
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := execute(ns, req, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	var out []syscall.NetlinkRouteAttr
	for _, m := range msgs {
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			if a.Attr.Type&nlaTypeMask != unix.IFLA_LINKINFO {
				continue
			}
			infos, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return nil, err
			}
			for _, i := range infos {
				if i.Attr.Type&nlaTypeMask == want {
					if out, err = nl.ParseRouteAttr(i.Value); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return out, nil
}

// execute sends req, a netlink request the library has no call for, on a
// route netlink socket opened in ns (the calling thread stays where it
// is), and returns the replies of type resType.
func execute(ns *netns.NS, req *nl.NetlinkRequest, resType uint16) ([][]byte, error) {
	s, err := nl.GetNetlinkSocketAt(vnetns.NsHandle(ns.Fd()), vnetns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in namespace %s: %w", ns, err)
	}
	defer s.Close()
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	return req.Execute(unix.NETLINK_ROUTE, resType)
}

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from an
// attribute's type.
const nlaTypeMask = 0x3fff

// CheckMulticastQuerier says what keeps the bridge called name from being
// its link's multicast querier ("" if nothing, or if the bridge is gone).
func CheckMulticastQuerier(ns *netns.NS, name string) (string, error) {
	on, err := MulticastQuerier(ns, name)
	if errors.Is(err, ErrNotFound) || on {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return "is not its link's multicast querier (or does not snoop): IPv6 neighbour solicitations reach every sandbox", nil
}
