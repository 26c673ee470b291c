package main

import (
	"context"
	"fmt"
	"net/netip"
	"text/tabwriter"

	"github.com/sandnet/sandnet"
)

var (
	netCreateCmd = command{
		usage:   "net create NAME [--driver D] [--subnet CIDR] [--subnet6 CIDR] [--gateway IP] [--internal [--dns-forward]] [--no-icc] [--routed] [--no-neighbor-proxy] [--parent IF] [--vni N --peer IP... [--underlay IP]]",
		summary: "Create a network in the host namespace. A bridge network gets a bridge with the gateway address (and, when not internal, NAT).",
		min:     1, max: 1,
		examples: `  sandnet --host-ns lab net create n1 --subnet 10.88.0.0/24
  sandnet --host-ns lab --explain net create n1 --subnet 10.88.0.0/24 --subnet6 fd00:88::/64
  sandnet --host-ns lab net create backend --internal --no-icc
  sandnet --host-ns lab net create mv --driver macvlan --parent eth0 --subnet 192.168.1.0/24
  sandnet --host-ns lab net create ov --driver overlay --vni 42 --subnet 10.90.0.0/24 --peer 192.0.2.2
`,
	}
	netRmCmd = command{usage: "net rm NAME", summary: "Remove a network that has no endpoints left (its bridge, rules, leases and record).", min: 1, max: 1,
		examples: "  sandnet --host-ns lab net rm n1\n"}
	netLsCmd = command{usage: "net ls", summary: "List the networks of the host.", max: 0,
		examples: "  sandnet --host-ns lab net ls\n  sandnet --host-ns lab net ls --json\n"}
)

func (a *app) net(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("net: give create, rm or ls (see sandnet net --help)")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		return a.groupHelp("net", "Networks of the host namespace (bridge, macvlan, overlay, host, none).", netCreateCmd, netRmCmd, netLsCmd)
	case "create", "add":
		return a.netCreate(ctx, args[1:])
	case "rm", "del", "remove":
		pos, _, err := a.parse(a.flags(netRmCmd), netRmCmd, args[1:])
		if err != nil {
			return err
		}
		h, err := a.touchingHost(ctx)
		if err != nil {
			return err
		}
		defer h.Close()
		return h.RemoveNetwork(ctx, pos[0])
	case "ls", "list":
		if _, _, err := a.parse(a.flags(netLsCmd), netLsCmd, args[1:]); err != nil {
			return err
		}
		h, err := a.host(ctx)
		if err != nil {
			return err
		}
		defer h.Close()
		nets, err := h.Networks()
		if err != nil {
			return err
		}
		if a.json {
			if nets == nil {
				nets = []sandnet.Network{}
			}
			return a.printJSON(nets)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tDRIVER\tSUBNET\tGATEWAY\tBRIDGE\tENDPOINTS")
		for _, n := range nets {
			eps, _ := h.Endpoints(n.Name)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", n.Name, n.Driver, prefixes(n.Subnet, n.Subnet6), addrs(n.Gateway, n.Gateway6), dash(n.Bridge), len(eps))
		}
		return tw.Flush()
	}
	return usagef("net: unknown subcommand %q: give create, rm or ls", args[0])
}

func (a *app) netCreate(ctx context.Context, args []string) error {
	fs := a.flags(netCreateCmd)
	var (
		driver, subnet, subnet6, gateway, parent, underlay string
		internal, dnsForward, noICC, routed, noProxy       bool
		vni                                                uint
		peers                                              strList
	)
	fs.StringVar(&driver, "driver", "bridge", "`D`: bridge, macvlan, overlay, host or none")
	fs.StringVar(&subnet, "subnet", "", "IPv4 subnet `CIDR` (default: a free /24 of 10.89.0.0/16 for bridge networks)")
	fs.StringVar(&subnet6, "subnet6", "", "IPv6 subnet `CIDR` (dual stack)")
	fs.StringVar(&gateway, "gateway", "", "gateway `IP` (default: the subnet's first address)")
	fs.BoolVar(&internal, "internal", false, "no way out: no masquerade, no default route")
	fs.BoolVar(&dnsForward, "dns-forward", false, "with --internal: the name server forwards other names upstream (default: NXDOMAIN)")
	fs.BoolVar(&noICC, "no-icc", false, "forbid traffic between the network's sandboxes")
	fs.BoolVar(&routed, "routed", false, "no NAT: other hosts may route to the sandboxes' addresses directly")
	fs.BoolVar(&noProxy, "no-neighbor-proxy", false, "bridge: flood ARP to every port instead of answering it (for sandboxes that move their addresses or MACs themselves)")
	fs.StringVar(&parent, "parent", "", "macvlan: the host link `IF` to hang off (eth0.50 for VLAN 50)")
	fs.UintVar(&vni, "vni", 0, "overlay: VXLAN network identifier `N`")
	fs.Var(&peers, "peer", "overlay: another host's underlay `IP` (repeat)")
	fs.StringVar(&underlay, "underlay", "", "overlay: this host's underlay `IP` (default: the source address of the route to the first peer, as ip route get PEER shows)")
	pos, _, err := a.parse(fs, netCreateCmd, args)
	if err != nil {
		return err
	}
	n := sandnet.Network{Name: pos[0], Driver: sandnet.Driver(driver), Internal: internal, DNSForward: dnsForward, NoICC: noICC, Routed: routed,
		NoNeighborProxy: noProxy, Parent: parent, VNI: uint32(vni)}
	if n.Subnet, err = optPrefix("--subnet", subnet); err != nil {
		return err
	}
	if n.Subnet6, err = optPrefix("--subnet6", subnet6); err != nil {
		return err
	}
	if gateway != "" {
		gw, err := netip.ParseAddr(gateway)
		if err != nil {
			return usagef("--gateway %q is not an IP address", gateway)
		}
		if gw.Is4() {
			n.Gateway = gw
		} else {
			n.Gateway6 = gw
		}
	}
	if underlay != "" {
		if n.Underlay, err = netip.ParseAddr(underlay); err != nil {
			return usagef("--underlay %q is not an IP address", underlay)
		}
	}
	for _, p := range peers {
		a, err := netip.ParseAddr(p)
		if err != nil {
			return usagef("--peer %q is not an IP address", p)
		}
		n.Peers = append(n.Peers, a)
	}
	h, err := a.touchingHost(ctx)
	if err != nil {
		return err
	}
	defer h.Close()
	n, err = h.CreateNetwork(ctx, n)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(n)
	}
	fmt.Fprintf(a.stdout, "network %s (%s) %s gateway %s bridge %s\n", n.Name, n.Driver, prefixes(n.Subnet, n.Subnet6), addrs(n.Gateway, n.Gateway6), dash(n.Bridge))
	return nil
}

func optPrefix(flag, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, usagef("%s %q is not a CIDR like 10.88.0.0/24", flag, s)
	}
	return p, nil
}

func prefixes(ps ...netip.Prefix) string {
	var out string
	for _, p := range ps {
		if p.IsValid() {
			if out != "" {
				out += ","
			}
			out += p.String()
		}
	}
	return dash(out)
}

func addrs(as ...netip.Addr) string {
	var out string
	for _, a := range as {
		if a.IsValid() {
			if out != "" {
				out += ","
			}
			out += a.String()
		}
	}
	return dash(out)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
