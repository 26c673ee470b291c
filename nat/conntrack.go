package nat

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

var protoNum = map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// FlushConntrack deletes the connection-tracking entries of namespace ns
// whose original destination is one of the UDP or SCTP host ports (and host
// address, when set), so a flow that started before a port was published (or
// unpublished) does not keep its stale translation.
//
// TCP ports are skipped, as Docker does: a TCP flow cannot outlive a change
// of translation (a connection to an unpublished port was refused and its
// entry dies with it; one to a sandbox that is gone is reset), while UDP
// "flows" have no end and a stale entry would capture every later datagram.
// A dump walks the kernel's whole connection table (about 9 ms here even
// when it is empty), which is most of what publishing a port would cost.
//
// Equivalent to: conntrack -D -f ipv4 -p tcp --orig-port-dst PORT [--orig-dst IP]
func FlushConntrack(ctx context.Context, ns *netns.NS, ports []PortMapping) error {
	if len(ports) == 0 {
		return nil
	}
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	// One dump per family, matched against every port's filter.
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		v6 := fam == unix.AF_INET6
		var filters []netlink.CustomConntrackFilter
		for _, p := range ports {
			if p.HostIP.IsValid() && p.HostIP.Is6() != v6 || p.proto() == "tcp" {
				continue
			}
			f := &netlink.ConntrackFilter{}
			if err := f.AddProtocol(protoNum[p.proto()]); err != nil {
				return err
			}
			if err := f.AddPort(netlink.ConntrackOrigDstPort, p.HostPort); err != nil {
				return err
			}
			cmd := fmt.Sprintf("conntrack -D -f ipv%d -p %s --orig-port-dst %d", map[bool]int{false: 4, true: 6}[v6], p.proto(), p.HostPort)
			if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
				if err := f.AddIP(netlink.ConntrackOrigDstIP, net.IP(p.HostIP.AsSlice())); err != nil {
					return err
				}
				cmd += " --orig-dst " + p.HostIP.String()
			}
			explain.Say(ctx, "%s", ns.Shell(cmd))
			filters = append(filters, f)
		}
		if len(filters) == 0 {
			continue
		}
		if _, err := nl.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...); err != nil {
			return fmt.Errorf("flushing conntrack entries of published ports in %s: %w", ns, err)
		}
	}
	return nil
}
