package bridge

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink/nl"
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
	// The netlink library has no field for it: one RTM_NEWLINK by hand,
	// sent from a thread inside ns.
	err = ns.Do(func() error {
		req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(br.Index)
		req.AddData(msg)
		info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
		info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
		data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
		data.AddRtAttr(nl.IFLA_BR_MCAST_QUERIER, nl.Uint8Attr(v))
		req.AddData(info)
		_, err := req.Execute(unix.NETLINK_ROUTE, 0)
		return err
	})
	if err != nil {
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
	var querier, snooping bool
	err = ns.Do(func() error {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, 0)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(br.Index)
		req.AddData(msg)
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
			if err != nil {
				return err
			}
			for _, a := range attrs {
				if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_LINKINFO {
					continue
				}
				infos, err := nl.ParseRouteAttr(a.Value)
				if err != nil {
					return err
				}
				for _, i := range infos {
					if i.Attr.Type&^unix.NLA_F_NESTED != nl.IFLA_INFO_DATA {
						continue
					}
					data, err := nl.ParseRouteAttr(i.Value)
					if err != nil {
						return err
					}
					for _, d := range data {
						switch d.Attr.Type {
						case nl.IFLA_BR_MCAST_QUERIER:
							querier = len(d.Value) > 0 && d.Value[0] == 1
						case nl.IFLA_BR_MCAST_SNOOPING:
							snooping = len(d.Value) > 0 && d.Value[0] == 1
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("reading the multicast settings of bridge %s in %s: %w", name, ns, err)
	}
	return querier && snooping, nil
}
