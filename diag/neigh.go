package diag

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/bridge"
)

// neighborProxy checks that the bridge answers address resolution for the
// endpoint (sandnet's default on bridge networks): the permanent neighbour
// entries in the sandbox (its gateway) and on the bridge device (its
// addresses), the static FDB entry of its MAC and the proxy_arp_wifi flag
// of its port. (The kernel flushes the bridge device's entries with its
// last IPv4 address, so this check waits for gateway-address.) A network
// that floods instead (NoNeighborProxy) passes,
// with a hint when it has as many ports as a CPU's backlog holds packets.
func (c *checker) neighborProxy() (Status, string) {
	if ok, why := c.hostSide(); !ok {
		return Skip, why
	}
	if c.net != nil && c.net.NoNeighborProxy {
		return Pass, "network " + c.ep.Network + " floods address resolution to every port (NoNeighborProxy)" + c.backlogHint()
	}
	rep, err := c.hostCheck(c.opts.Host)
	if err != nil {
		return Fail, fmt.Sprintf("checking endpoint %s: %v", c.ep.ID, err)
	}
	var missing []string
	for _, p := range rep.Problems {
		if p.Object == sandnet.ObjNeighbor {
			missing = append(missing, p.String())
		}
	}
	if len(missing) > 0 {
		return Fail, fmt.Sprintf("%s: the bridge floods what it should answer; put them back with: sandnet --host-ns %s repair %s --net %s",
			strings.Join(missing, "; "), c.hostNS, c.sb, c.ep.Network)
	}
	return Pass, fmt.Sprintf("bridge %s answers ARP for %s, which knows its gateway's MAC", c.ep.Bridge, c.ep.SandboxID)
}

// backlogHint says, when the bridge has at least as many ports as
// net.core.netdev_max_backlog, that one flooded frame can fill a CPU's
// backlog. sandnet never changes that setting.
func (c *checker) backlogHint() string {
	v, err := c.hostNS.ReadSysctl("net.core.netdev_max_backlog")
	if err != nil {
		return ""
	}
	limit, err := strconv.Atoi(v)
	if err != nil {
		return ""
	}
	list, err := bridge.Ports(c.hostNS, c.ep.Bridge)
	ports := len(list)
	if err != nil || ports < limit {
		return ""
	}
	return fmt.Sprintf("; hint: its %d ports reach net.core.netdev_max_backlog (%d), so one broadcast can fill a CPU's backlog and lose packets (the drop column of /proc/net/softnet_stat): let the bridge answer (drop NoNeighborProxy) or raise the limit host-wide yourself", ports, limit)
}
