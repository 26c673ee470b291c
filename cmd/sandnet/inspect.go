package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/diag"
	"github.com/sandnet/sandnet/netns"
)

var (
	inspectCmd = command{
		usage:   "inspect NS [--graph]",
		summary: "Show everything about the sandbox NS's network: namespace, links, addresses, routes (all tables), neighbours, resolv.conf, listening sockets, and where sandnet attached it. NS is a name, a path or pid:PID (the docker inspect -f '{{.State.Pid}}' route).",
		min:     0, max: 1,
		examples: `  sandnet --host-ns lab inspect sbx1
  sandnet --host-ns lab inspect pid:4242 --json | jq .attached
  sandnet --host-ns lab inspect sbx1 --graph | dot -Tsvg > sbx1.svg
`,
	}
	doctorCmd = command{
		usage:   "doctor NS [--net NAME] [--resolve NAME] [--timeout D]",
		summary: "Walk the troubleshooting checklist for the sandbox NS: interface, address, route, gateway, DNS, forwarding, firewall, bridge port. Exit status 0 only when no check fails (a skipped check does not fail).",
		min:     1, max: 1,
		examples: `  sandnet --host-ns lab doctor sbx1
  sandnet --host-ns lab doctor sbx1 --resolve web --json
`,
	}
	graphCmd = command{
		usage:    "graph",
		summary:  "Print the topology (namespaces, veth pairs, bridges, networks, published ports) as Graphviz DOT.",
		max:      0,
		examples: "  sandnet --host-ns lab graph | dot -Tsvg > net.svg\n",
	}
	gcCmd = command{
		usage:    "gc",
		summary:  "Remove what crashed processes left: endpoints whose namespace is gone (leases, host veths, rules).",
		max:      0,
		examples: "  sandnet --host-ns lab gc\n",
	}
)

func (a *app) inspect(ctx context.Context, args []string) error {
	fs := a.flags(inspectCmd)
	graph := fs.Bool("graph", false, "print the topology as Graphviz DOT instead (all of it when NS is not given)")
	pos, _, err := a.parse(fs, inspectCmd, args)
	if err != nil {
		return err
	}
	if *graph {
		return a.printGraph(ctx, pos)
	}
	if len(pos) == 0 {
		return usagef("usage: sandnet %s (see sandnet inspect --help)", inspectCmd.usage)
	}
	sb, h, closeBoth, err := a.sandboxAndHost(ctx, pos[0])
	if err != nil {
		return err
	}
	defer closeBoth()
	r, err := diag.Inspect(ctx, sb, h)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(r)
	}
	printReport(a.stdout, r)
	return nil
}

func printReport(w io.Writer, r *diag.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	name := r.NetNS.Name
	if name == "" {
		name = "-"
	}
	fmt.Fprintf(tw, "NAMESPACE\t%s\tnet:[%d]\t%s\n", name, r.NetNS.Inode, r.NetNS.Path)
	fmt.Fprintln(tw, "\nLINKS\tTYPE\tSTATE\tMTU\tMAC\tPEER\tMASTER")
	for _, l := range r.Links {
		state := l.State
		if !l.Up {
			state = "DOWN (admin)"
		}
		peer := "-"
		if l.PeerIndex != 0 {
			peer = fmt.Sprintf("@if%d", l.PeerIndex)
		}
		fmt.Fprintf(tw, "%d: %s\t%s\t%s\t%d\t%s\t%s\t%s\n", l.Index, l.Name, l.Type, state, l.MTU, dash(l.MAC), peer, dash(l.Master))
	}
	fmt.Fprintln(tw, "\nADDRESSES\tLINK\tSCOPE")
	for _, ad := range r.Addresses {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ad.Prefix, ad.Link, ad.Scope)
	}
	fmt.Fprintln(tw, "\nROUTES\tTABLE\tGATEWAY\tDEV\tTYPE\tSCOPE")
	for _, rt := range r.Routes {
		gw := "-"
		if rt.Gateway.IsValid() {
			gw = rt.Gateway.String()
		}
		if rt.LinkDown {
			gw += " (linkdown)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", rt.Dst, rt.Table, gw, dash(rt.Dev), rt.Type, rt.Scope)
	}
	fmt.Fprintln(tw, "\nNEIGHBOURS\tLINK\tMAC\tSTATE")
	for _, n := range r.Neighbours {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.IP, n.Link, dash(n.MAC), n.State)
	}
	rc := r.ResolvConf
	fmt.Fprintf(tw, "\nRESOLV.CONF\t%s\n", rc)
	for _, s := range rc.Nameservers {
		fmt.Fprintf(tw, "  nameserver\t%s\n", s)
	}
	if len(rc.Search) > 0 {
		fmt.Fprintf(tw, "  search\t%s\n", strings.Join(rc.Search, " "))
	}
	if len(rc.Options) > 0 {
		fmt.Fprintf(tw, "  options\t%s\n", strings.Join(rc.Options, " "))
	}
	fmt.Fprintln(tw, "\nLISTENING\tPROTO\tSTATE\tINODE")
	for _, s := range r.Sockets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", s.Local, s.Proto, s.State, s.Inode)
	}
	fmt.Fprintln(tw, "\nATTACHED TO\tDRIVER\tENDPOINT\tINTERFACE\tHOST SIDE\tBRIDGE\tADDRESSES\tPORTS")
	if len(r.Attached) == 0 {
		fmt.Fprintln(tw, "(no sandnet endpoint in this host's state dir)")
	}
	for _, at := range r.Attached {
		var ports []string
		for _, p := range at.Ports {
			ports = append(ports, portString(p))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", at.Network, at.Driver, at.EndpointID, dash(at.IfName), dash(at.HostIfName), dash(at.Bridge), prefixes(at.Addresses...), dash(strings.Join(ports, ",")))
	}
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "\nERROR\t%s\n", e)
	}
}

func (a *app) doctor(ctx context.Context, args []string) error {
	fs := a.flags(doctorCmd)
	var opts diag.CheckOptions
	fs.StringVar(&opts.Network, "net", "", "check the endpoint on network `NAME` (default: the sandbox's bridge endpoint)")
	fs.StringVar(&opts.ResolveName, "resolve", "", "the `NAME` to resolve (default: the sandbox's DNS name)")
	fs.DurationVar(&opts.Timeout, "timeout", 2*time.Second, "time to wait for each probe (`D`)")
	pos, _, err := a.parse(fs, doctorCmd, args)
	if err != nil {
		return err
	}
	sb, h, closeBoth, err := a.sandboxAndHost(ctx, pos[0])
	if err != nil {
		return err
	}
	defer closeBoth()
	opts.Host = h
	opts.Rules = ruleChecker(h)
	rs := diag.Check(ctx, sb, opts)
	failed := diag.Failed(rs)
	if a.json {
		if err := a.printJSON(struct {
			OK     bool          `json:"ok"`
			Checks []diag.Result `json:"checks"`
		}{!failed, rs}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(r.Status)), r.Name, r.Reason)
		}
		tw.Flush()
	}
	if failed {
		return exitCode(exitError)
	}
	return nil
}

func (a *app) graph(ctx context.Context, args []string) error {
	pos, _, err := a.parse(a.flags(graphCmd), graphCmd, args)
	if err != nil {
		return err
	}
	return a.printGraph(ctx, pos)
}

// printGraph prints the host's topology, or one sandbox's part of it.
func (a *app) printGraph(ctx context.Context, pos []string) error {
	h, err := a.host(ctx)
	if err != nil {
		return err
	}
	defer h.Close()
	topo, err := diag.Topology(h)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		sb, err := netns.Open(pos[0])
		if err != nil {
			return err
		}
		topo = topo.Only(sb.Inode())
		sb.Close()
	}
	if a.json {
		return a.printJSON(topo)
	}
	_, err = io.WriteString(a.stdout, topo.DOT())
	return err
}

func (a *app) gc(ctx context.Context, args []string) error {
	return hostReport(a, ctx, gcCmd, args, (*sandnet.Host).GC, func(rep sandnet.GCReport, err error) {
		for _, line := range rep.Endpoints {
			fmt.Fprintln(a.stdout, "removed endpoint", line)
		}
		for _, line := range rep.Leases {
			fmt.Fprintln(a.stdout, "released lease", line)
		}
		for _, name := range rep.Networks {
			fmt.Fprintln(a.stdout, "removed network", name)
		}
		for _, line := range rep.Ports {
			fmt.Fprintln(a.stdout, "dropped port", line)
		}
		if len(rep.Endpoints)+len(rep.Leases)+len(rep.Networks)+len(rep.Ports) == 0 && err == nil {
			fmt.Fprintln(a.stdout, "nothing to collect")
		}
	})
}

// hostReport runs a command that takes no argument and acts on the whole
// Host: it prints the report as JSON with --json, else with text, and
// returns run's error (the report is printed also when run fails part way).
func hostReport[T any](a *app, ctx context.Context, c command, args []string, run func(*sandnet.Host, context.Context) (T, error), text func(T, error)) error {
	if _, _, err := a.parse(a.flags(c), c, args); err != nil {
		return err
	}
	h, err := a.touchingHost(ctx)
	if err != nil {
		return err
	}
	defer h.Close()
	rep, err := run(h, ctx)
	if a.json {
		if perr := a.printJSON(rep); perr != nil {
			return perr
		}
		return err
	}
	text(rep, err)
	return err
}
