package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sandnet/sandnet"
)

// openHost opens the sandnet Host over the plugin's own namespace (the
// node's, where the runtime runs it) and the configured state dir.
func openHost(ctx context.Context, c *netConf) (*sandnet.Host, error) {
	cfg := sandnet.HostConfig{StateDir: c.StateDir, FirewallBackend: c.firewallBackend()}
	if c.DNS.Off {
		cfg.DNS = sandnet.DNSOff
	}
	h, err := sandnet.NewHost(ctx, cfg)
	if err != nil {
		code := errNotAvailable
		if errors.Is(err, sandnet.ErrInvalid) {
			code = types.ErrInvalidNetworkConfig
		}
		return nil, &types.Error{Code: code, Msg: "opening sandnet's host state", Details: err.Error()}
	}
	return h, nil
}

// delegated reports whether an IPAM plugin hands out the addresses.
func (c *netConf) delegated() bool { return c.IPAM != nil && c.IPAM.Type != "" }

func cmdAdd(args *skel.CmdArgs) error {
	ctx := context.Background()
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := c.prevResult()
	if err != nil {
		return err
	}
	opts, err := c.attachOptions(args.ContainerID, args.IfName, parseArgs(args.Args))
	if err != nil {
		return err
	}
	n := c.network()
	if c.delegated() {
		r, err := c.delegate(ctx, "ADD", args.StdinData)
		if err != nil {
			return err
		}
		ok := false
		defer func() {
			if !ok {
				c.delegate(context.WithoutCancel(ctx), "DEL", args.StdinData)
			}
		}()
		if err := useIPAMResult(r, &n, &opts); err != nil {
			return err
		}
		if err := add(ctx, c, args, n, opts, prev); err != nil {
			return err
		}
		ok = true
		return nil
	}
	return add(ctx, c, args, n, opts, prev)
}

// add attaches the sandbox, limits its bandwidth and prints the result.
func add(ctx context.Context, c *netConf, args *skel.CmdArgs, n sandnet.Network, opts sandnet.AttachOptions, prev types.Result) error {
	h, err := openHost(ctx, c)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := ensureNodeRoutes(ctx, h, c.NodeRoutes); err != nil {
		return cniError("ADD", &sandnet.StepError{Op: "attach", Object: fmt.Sprintf("network %q", n.Name), Step: "adding node routes", Err: err})
	}
	ep, err := h.Attach(ctx, args.Netns, n, opts)
	if err != nil {
		return cniError("ADD", err)
	}
	res, err := func() (*current.Result, error) {
		if bw := c.bandwidth(); bw != nil {
			if err := setBandwidth(ctx, h, ep, bw); err != nil {
				return nil, &sandnet.StepError{Op: "attach", Object: fmt.Sprintf("sandbox %q to network %q", ep.SandboxID, ep.Network), Step: "limiting bandwidth", Err: err}
			}
		}
		return buildResult(h, ep, args.Netns, prev)
	}()
	if err == nil {
		err = types.PrintResult(res, c.CNIVersion)
	}
	if err != nil {
		return cniError("ADD", errors.Join(err, h.Detach(context.WithoutCancel(ctx), ep)))
	}
	return nil
}

// useIPAMResult makes the IPAM plugin's addresses the sandbox's static
// ones, and, where the configuration names no subnet, the network's
// subnet and gateway those of the first address of each family.
func useIPAMResult(r types.Result, n *sandnet.Network, o *sandnet.AttachOptions) error {
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return &types.Error{Code: types.ErrDecodingFailure, Msg: "decoding the IPAM plugin's result", Details: err.Error()}
	}
	for _, ipc := range res.IPs {
		ones, _ := ipc.Address.Mask.Size()
		ip, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		p := netip.PrefixFrom(ip, ones).Masked()
		gw, _ := netip.AddrFromSlice(ipc.Gateway)
		gw = gw.Unmap()
		if ip.Is4() && !o.IP.IsValid() {
			o.IP = ip
			if !n.Subnet.IsValid() {
				n.Subnet, n.Gateway = p, gw
			}
		} else if ip.Is6() && !o.IP6.IsValid() {
			o.IP6 = ip
			if !n.Subnet6.IsValid() {
				n.Subnet6, n.Gateway6 = p, gw
			}
		}
	}
	if !o.IP.IsValid() && !o.IP6.IsValid() {
		return invalidConf("the IPAM plugin returned no address")
	}
	return nil
}

// withHost parses the configuration, opens the Host, runs fn and, when an
// IPAM plugin is configured and fn succeeded, forwards verb to it.
func withHost(args *skel.CmdArgs, verb string, fn func(ctx context.Context, c *netConf, h *sandnet.Host) error) error {
	ctx := context.Background()
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	h, err := openHost(ctx, c)
	if err != nil {
		return err
	}
	err = fn(ctx, c, h)
	h.Close()
	if err != nil || !c.delegated() {
		return err
	}
	_, err = c.delegate(ctx, verb, args.StdinData)
	return err
}

func cmdDel(args *skel.CmdArgs) error {
	return withHost(args, "DEL", func(ctx context.Context, c *netConf, h *sandnet.Host) error {
		// The record names everything to remove; CNI_NETNS (empty when the
		// runtime lost it) and prevResult are not needed. A container never
		// added, or deleted already, has no record: success.
		err := h.Detach(ctx, &sandnet.Endpoint{Network: c.Name, SandboxID: sandboxID(args.ContainerID), IfName: args.IfName}, sandnet.DetachOptions{})
		var se *sandnet.StepError
		if errors.Is(err, sandnet.ErrInvalid) && !errors.As(err, &se) {
			return nil // a network name sandnet refuses: never added (a failed teardown is a StepError)
		}
		return cniError("DEL", err)
	})
}

func cmdCheck(args *skel.CmdArgs) error {
	return withHost(args, "CHECK", func(ctx context.Context, c *netConf, h *sandnet.Host) error {
		prev, err := c.prevResult()
		if err != nil {
			return err
		}
		if prev == nil {
			return invalidConf("CHECK: no prevResult to check against")
		}
		ep, err := h.LookupEndpoint(c.Name, sandboxID(args.ContainerID), args.IfName)
		if errors.Is(err, sandnet.ErrNotFound) {
			return &types.Error{Code: types.ErrUnknownContainer, Msg: "CHECK: no such attachment", Details: err.Error()}
		}
		if err != nil {
			return cniError("CHECK", err)
		}
		problems := checkPrevResult(prev, ep, args)
		rep, err := h.Check(ctx, ep)
		if err != nil {
			return cniError("CHECK", err)
		}
		for _, p := range rep.Problems {
			problems = append(problems, p.String())
		}
		if bw := c.bandwidth(); bw != nil && len(problems) == 0 {
			problems = append(problems, checkBandwidth(h, ep, bw)...)
		}
		if len(problems) > 0 {
			return &types.Error{Code: types.ErrInternal,
				Msg:     fmt.Sprintf("CHECK: sandbox %q on network %q: %s", ep.SandboxID, ep.Network, problems[0]),
				Details: strings.Join(problems[1:], "; ")}
		}
		return nil
	})
}

// checkPrevResult compares the result the runtime kept with the record:
// the sandbox interface, its MAC, addresses and routes.
func checkPrevResult(prev types.Result, ep *sandnet.Endpoint, args *skel.CmdArgs) []string {
	res, err := current.NewResultFromResult(prev)
	if err != nil {
		return []string{"prevResult: " + err.Error()}
	}
	idx := slices.IndexFunc(res.Interfaces, func(i *current.Interface) bool { return i.Name == args.IfName && i.Sandbox != "" })
	if idx < 0 {
		return []string{fmt.Sprintf("prevResult has no interface %s in a sandbox", args.IfName)}
	}
	var out []string
	if m := res.Interfaces[idx].Mac; m != "" && ep.MAC != "" && !strings.EqualFold(m, ep.MAC) {
		out = append(out, fmt.Sprintf("interface %s: prevResult says MAC %s, sandnet recorded %s", args.IfName, m, ep.MAC))
	}
	var got []netip.Prefix
	for _, ipc := range res.IPs {
		if ipc.Interface == nil || *ipc.Interface != idx {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipc.Address.IP)
		ones, _ := ipc.Address.Mask.Size()
		got = append(got, netip.PrefixFrom(ip.Unmap(), ones))
	}
	for _, p := range ep.Addresses {
		if !slices.Contains(got, p) {
			out = append(out, fmt.Sprintf("address %s: recorded by sandnet, missing from prevResult", p))
		}
	}
	for _, p := range got {
		if !slices.Contains(ep.Addresses, p) {
			out = append(out, fmt.Sprintf("address %s: in prevResult, not sandnet's (it has %v)", p, ep.Addresses))
		}
	}
	for _, r := range ep.Routes {
		if !slices.ContainsFunc(res.Routes, func(x *types.Route) bool {
			ones, _ := x.Dst.Mask.Size()
			gw, _ := netip.AddrFromSlice(x.GW)
			dst, _ := netip.AddrFromSlice(x.Dst.IP)
			return netip.PrefixFrom(dst.Unmap(), ones) == r.Dst && gw.Unmap() == r.Via
		}) {
			out = append(out, fmt.Sprintf("route %s via %s: missing from prevResult", r.Dst, r.Via))
		}
	}
	return out
}

func cmdGC(args *skel.CmdArgs) error {
	return withHost(args, "GC", func(ctx context.Context, c *netConf, h *sandnet.Host) error {
		valid := c.Valid
		if valid == nil {
			valid = c.Attachments // the key's name before spec 1.1.0 settled
		}
		if valid == nil {
			return nil // without the key nothing is freed: the runtime did not say what is valid
		}
		keep := map[string]bool{}
		for _, a := range valid {
			keep[sandboxID(a.ContainerID)+"\x00"+a.IfName] = true
		}
		_, err := h.GCNetwork(ctx, c.Name, func(ep *sandnet.Endpoint) bool { return keep[ep.SandboxID+"\x00"+ep.IfName] })
		return cniError("GC", err)
	})
}

func cmdStatus(args *skel.CmdArgs) error {
	return withHost(args, "STATUS", func(ctx context.Context, c *netConf, h *sandnet.Host) error {
		if err := h.Ready(ctx); err != nil {
			return &types.Error{Code: errNotAvailable, Msg: "STATUS: sandnet cannot attach", Details: err.Error()}
		}
		return nil
	})
}
