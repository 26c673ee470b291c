package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/netns"
)

var (
	attachCmd = command{
		usage:   "attach NS --net NAME [--ip IP] [-p SPEC]... [--name N] [--alias A]...",
		summary: "Connect the sandbox NS (a name, a path or pid:PID) to an existing network: veth pair, address, default route, DNS, published ports.",
		min:     1, max: 1,
		examples: `  sandnet --host-ns lab attach sbx1 --net n1
  sandnet --host-ns lab --explain attach sbx1 --net n1 --ip 10.88.0.10 --name web --alias www
  sandnet --host-ns lab attach pid:4242 --net n1 -p 127.0.0.1:8080:80/tcp -p 5353:53/udp
`,
	}
	detachCmd = command{
		usage:   "detach NS --net NAME",
		summary: "Disconnect the sandbox NS from the network, undoing what attach did. Works when NS is already gone (give its name).",
		min:     1, max: 1,
		examples: "  sandnet --host-ns lab detach sbx1 --net n1\n",
	}
)

func (a *app) attach(ctx context.Context, args []string) error {
	fs := a.flags(attachCmd)
	var (
		network, ip, name string
		ports, aliases    strList
	)
	fs.StringVar(&network, "net", "", "the network `NAME` (required; create it with sandnet net create)")
	fs.StringVar(&ip, "ip", "", "a static `IP` from the network's subnet (IPv4 or IPv6)")
	fs.Var(&ports, "p", "publish a port, Docker's `SPEC`: [HOSTIP:]HOSTPORT:PORT[/tcp|udp] (repeat)")
	fs.StringVar(&name, "name", "", "the sandbox's DNS name `N` on the network")
	fs.Var(&aliases, "alias", "another DNS name `A` (repeat)")
	pos, _, err := a.parse(fs, attachCmd, args)
	if err != nil {
		return err
	}
	if network == "" {
		return usagef("attach: --net NAME is required")
	}
	opts, err := attachOptions(ip, name, aliases, ports)
	if err != nil {
		return err
	}
	h, err := a.touchingHost(ctx)
	if err != nil {
		return err
	}
	defer h.Close()
	ep, err := h.Attach(ctx, pos[0], sandnet.Network{Name: network}, opts)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(ep)
	}
	fmt.Fprintf(a.stdout, "attached %s to %s: %s %s", ep.SandboxID, ep.Network, dash(ep.IfName), prefixes(ep.Addresses...))
	if ep.Gateway.IsValid() {
		fmt.Fprintf(a.stdout, " via %s", ep.Gateway)
	}
	if ep.HostIfName != "" {
		fmt.Fprintf(a.stdout, " (host side %s on bridge %s)", ep.HostIfName, ep.Bridge)
	}
	for _, p := range ep.Ports {
		fmt.Fprintf(a.stdout, " %s", portString(p))
	}
	fmt.Fprintln(a.stdout)
	return nil
}

func (a *app) detach(ctx context.Context, args []string) error {
	fs := a.flags(detachCmd)
	var network string
	fs.StringVar(&network, "net", "", "the network `NAME` (required)")
	pos, _, err := a.parse(fs, detachCmd, args)
	if err != nil {
		return err
	}
	if network == "" {
		return usagef("detach: --net NAME is required")
	}
	h, err := a.touchingHost(ctx)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.Network(network); err != nil {
		return err
	}
	spec := pos[0]
	sb, err := netns.Open(spec)
	if err != nil {
		// The namespace is gone: detach by sandbox ID, which defaults to its name.
		if errors.Is(err, netns.ErrNotFound) && !strings.ContainsAny(spec, "/:") {
			return h.DetachSandbox(ctx, network, spec)
		}
		return err
	}
	defer sb.Close()
	eps, err := h.EndpointsOf(sb)
	if err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, ep := range eps {
		if ep.Network == network {
			n++
			errs = append(errs, h.Detach(ctx, ep))
		}
	}
	if n == 0 {
		return fmt.Errorf("detaching %s: it is not attached to network %q: %w", sb, network, sandnet.ErrNotFound)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !a.json {
		fmt.Fprintf(a.stdout, "detached %s from %s\n", sb, network)
	}
	return nil
}

func portString(p sandnet.PortMapping) string {
	host := ""
	if p.HostIP.IsValid() {
		host = p.HostIP.String() + ":"
	}
	proto := p.Proto
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%s%d->%d/%s", host, p.HostPort, p.ContainerPort, proto)
}

// attachOptions makes the options of attach and run from their flags.
func attachOptions(ip, name string, aliases, ports strList) (sandnet.AttachOptions, error) {
	opts := sandnet.AttachOptions{Hostname: name, Aliases: aliases}
	if ip != "" {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return opts, usagef("--ip %q is not an IP address", ip)
		}
		if addr.Is4() {
			opts.IP = addr
		} else {
			opts.IP6 = addr
		}
	}
	var err error
	opts.Ports, err = parsePorts(ports)
	return opts, err
}
