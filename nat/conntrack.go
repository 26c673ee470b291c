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
// whose original destination is one of the host ports (and host address,
// when set), so a flow that started before a port was published (or
// unpublished) does not keep its stale translation.
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
	for _, p := range ports {
		for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
			v6 := fam == unix.AF_INET6
			if p.HostIP.IsValid() && p.HostIP.Is6() != v6 {
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
			if _, err := nl.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f); err != nil {
				return fmt.Errorf("flushing conntrack entries of port %s in %s: %w", p, ns, err)
			}
		}
	}
	return nil
}
