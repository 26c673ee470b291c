package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

// The kinds of object Check verifies; a Problem names one.
const (
	ObjRecord       = "record"            // the endpoint's record says the attach finished
	ObjSandbox      = "sandbox"           // the sandbox namespace is alive
	ObjBridge       = "bridge"            // the network's bridge exists and is up
	ObjGatewayAddr  = "gateway-address"   // the bridge carries the gateway address(es)
	ObjSysctl       = "sysctl"            // forwarding and route_localnet are on
	ObjHostVeth     = "host-veth"         // the host end exists, is up, on the bridge
	ObjSandboxIf    = "sandbox-interface" // the sandbox's interface exists and is up
	ObjAddress      = "address"           // it carries the endpoint's addresses
	ObjRoute        = "route"             // the default route(s) via the gateway(s)
	ObjRule         = "rule"              // a firewall rule (network's or endpoint's)
	ObjLease        = "lease"             // the IPAM lease holds the addresses
	ObjPort         = "port"              // the port table holds the published port
	ObjDNS          = "dns"               // the network's name server answers the endpoint's names
	checkDNSTimeout = 2 * time.Second
)

// Problem is one piece of an endpoint or its network that is missing or
// wrong in the kernel or the state dir.
type Problem struct {
	// Object is the kind of object (ObjHostVeth, ObjRule...).
	Object string `json:"object"`
	// Name says which one: an interface, an address, a rule's command.
	Name string `json:"name"`
	// Detail says what is wrong with it.
	Detail string `json:"detail"`
	// Repairable is false for problems Repair cannot fix (the sandbox
	// namespace is gone, the attach never finished: GC's work).
	Repairable bool `json:"repairable"`
}

func (p Problem) String() string { return p.Object + " " + p.Name + ": " + p.Detail }

// CheckReport lists what Check found missing for one endpoint (and its network).
type CheckReport struct {
	Network  string    `json:"network"`
	Endpoint string    `json:"endpoint"`
	Sandbox  string    `json:"sandbox"`
	Problems []Problem `json:"problems,omitempty"`
}

// OK reports whether nothing is missing.
func (r CheckReport) OK() bool { return len(r.Problems) == 0 }

func (r *CheckReport) add(obj, name, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Object: obj, Name: name, Detail: fmt.Sprintf(format, args...), Repairable: true})
}

// Check verifies that the endpoint ep is still whole, against its record
// in the state dir: the host veth (present, up, on the bridge), the
// sandbox's interface (present, up, with its addresses and default
// routes), the bridge with its gateway addresses, the network's and the
// endpoint's firewall rules (through the firewall backend), the lease, the
// published ports in the port table, and the endpoint's DNS names on the
// network's name server. Each missing piece is one Problem. It changes
// nothing. An endpoint without a record is ErrNotFound.
func (h *Host) Check(ctx context.Context, ep *Endpoint) (CheckReport, error) {
	nrec, rec, err := h.checkTarget(ep)
	if err != nil {
		return CheckReport{}, err
	}
	rep := CheckReport{Network: nrec.Network.Name, Endpoint: rec.Endpoint.ID, Sandbox: rec.Endpoint.SandboxID}
	if err := h.checkNetwork(ctx, nrec, &rep); err != nil {
		return rep, err
	}
	err = h.checkEndpoint(ctx, nrec, rec, &rep, nil)
	return rep, err
}

// checkTarget reads the records of ep's network and of ep.
func (h *Host) checkTarget(ep *Endpoint) (*networkRecord, *endpointRecord, error) {
	if ep == nil {
		return nil, nil, invalidf("check: nil endpoint")
	}
	if err := checkName("network", ep.Network); err != nil {
		return nil, nil, err
	}
	nrec, err := h.readNetwork(ep.Network)
	if err != nil {
		return nil, nil, fmt.Errorf("checking endpoint of sandbox %q: network %q: %w", ep.SandboxID, ep.Network, err)
	}
	rec, err := h.readEndpoint(ep.Network, endpointIDOf(ep))
	if err != nil {
		return nil, nil, fmt.Errorf("checking endpoint of sandbox %q on network %q: %w", ep.SandboxID, ep.Network, err)
	}
	return nrec, rec, nil
}

// checkNetwork verifies the network-level objects: bridge, gateway
// addresses, host settings and the network's firewall rules.
func (h *Host) checkNetwork(ctx context.Context, nrec *networkRecord, rep *CheckReport) error {
	n := &nrec.Network
	if n.Driver != DriverBridge {
		return nil
	}
	nl, err := h.ns.Netlink()
	if err != nil {
		return err
	}
	link, err := nl.LinkByName(n.Bridge)
	if err != nil {
		rep.add(ObjBridge, n.Bridge, "missing from %s", h.ns)
	} else {
		if _, ok := link.(*netlink.Bridge); !ok {
			rep.Problems = append(rep.Problems, Problem{Object: ObjBridge, Name: n.Bridge, Detail: "is a " + link.Type() + ", not a bridge"})
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			rep.add(ObjBridge, n.Bridge, "is down")
		}
		have, err := prefixesOf(nl, link)
		if err != nil {
			return err
		}
		for _, p := range gatewayPrefixes(n) {
			if !slices.Contains(have, p) {
				rep.add(ObjGatewayAddr, p.String(), "missing from bridge %s", n.Bridge)
			}
		}
	}
	if err := h.checkQuerier(nrec, rep); err != nil {
		return err
	}
	for _, key := range networkSysctls(n) {
		if v, err := h.ns.ReadSysctl(key); err == nil && v != "1" {
			rep.add(ObjSysctl, key, "is %s, want 1", v)
		}
	}
	missing, err := h.fw.Check(ctx, natNetwork(n), nil)
	if err != nil {
		return fmt.Errorf("checking firewall rules of network %q: %w", n.Name, err)
	}
	for _, r := range missing {
		rep.add(ObjRule, r.Command(), "missing from %s", h.ns)
	}
	return nil
}

// networkSysctls are the host settings a bridge network needs.
func networkSysctls(n *Network) []string {
	var keys []string
	if !n.Internal && n.Subnet.IsValid() {
		keys = append(keys, "net.ipv4.ip_forward")
	}
	if !n.Internal && n.Subnet6.IsValid() {
		keys = append(keys, "net.ipv6.conf.all.forwarding")
	}
	if n.Subnet.IsValid() {
		keys = append(keys, "net/ipv4/conf/"+n.Bridge+"/route_localnet")
	}
	return keys
}

func gatewayPrefixes(n *Network) []netip.Prefix {
	var ps []netip.Prefix
	if n.Gateway.IsValid() {
		ps = append(ps, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))
	}
	if n.Gateway6.IsValid() {
		ps = append(ps, netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits()))
	}
	return ps
}

func prefixesOf(nl *netlink.Handle, link netlink.Link) ([]netip.Prefix, error) {
	addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return nl.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	var ps []netip.Prefix
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ones, _ := a.Mask.Size()
			ps = append(ps, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return ps, nil
}

// checkEndpoint verifies the endpoint's own objects. missingRules, when
// not nil, is what the firewall backend already reported missing for the
// network (one check for many endpoints).
func (h *Host) checkEndpoint(ctx context.Context, nrec *networkRecord, rec *endpointRecord, rep *CheckReport, missingRules []nat.Rule) error {
	n, ep := &nrec.Network, &rec.Endpoint
	if rec.State != stateAttached {
		rep.Problems = append(rep.Problems, Problem{Object: ObjRecord, Name: ep.ID, Detail: "the attach did not finish (run GC)"})
		return nil
	}
	if !netns.Alive(ep.NetNS, ep.NetNSInode) {
		rep.Problems = append(rep.Problems, Problem{Object: ObjSandbox, Name: ep.NetNS, Detail: "the namespace is gone (run GC)"})
		return nil
	}
	if usesIPAM(n.Driver) {
		l, err := h.ipam.Get(leaseKey(ep))
		switch {
		case errors.Is(err, ErrNotFound):
			rep.add(ObjLease, leaseKey(ep).String(), "not held (addresses %v)", ep.Addresses)
		case err != nil:
			return err
		case !slices.Equal(l.Addrs, ep.Addresses):
			rep.Problems = append(rep.Problems, Problem{Object: ObjLease, Name: leaseKey(ep).String(), Detail: fmt.Sprintf("holds %v, the record says %v", l.Addrs, ep.Addresses)})
		}
	}
	if len(ep.Ports) > 0 {
		held, err := h.portsHeld(ctx, ep, ep.Ports)
		if err != nil {
			return err
		}
		for _, p := range ep.Ports {
			if !slices.Contains(held, p) {
				rep.add(ObjPort, p.String(), "not in the port table")
			}
		}
	}
	linksOK := true
	if n.Driver == DriverBridge {
		nl, err := h.ns.Netlink()
		if err != nil {
			return err
		}
		link, err := nl.LinkByName(ep.HostIfName)
		if err != nil {
			rep.add(ObjHostVeth, ep.HostIfName, "missing from %s", h.ns)
			linksOK = false
		} else {
			if link.Attrs().Flags&net.FlagUp == 0 {
				rep.add(ObjHostVeth, ep.HostIfName, "is down")
				linksOK = false
			}
			br, err := nl.LinkByName(n.Bridge)
			if err != nil || link.Attrs().MasterIndex != br.Attrs().Index {
				rep.add(ObjHostVeth, ep.HostIfName, "is not a port of bridge %s", n.Bridge)
				linksOK = false
			}
		}
		if missingRules == nil {
			missing, err := h.fw.Check(ctx, natNetwork(n), []nat.Endpoint{natEndpoint(ep, ep.Ports)})
			if err != nil {
				return fmt.Errorf("checking firewall rules of sandbox %q: %w", ep.SandboxID, err)
			}
			missingRules = missing
		}
		mine := nat.EndpointRules(natNetwork(n), natEndpoint(ep, ep.Ports))
		for _, r := range missingRules {
			if slices.ContainsFunc(mine, func(m nat.Rule) bool { return m.Comment == r.Comment && m.Family == r.Family }) {
				rep.add(ObjRule, r.Command(), "missing from %s", h.ns)
			}
		}
	}
	sb, err := netns.Open(ep.NetNS)
	if err != nil {
		rep.Problems = append(rep.Problems, Problem{Object: ObjSandbox, Name: ep.NetNS, Detail: err.Error()})
		return nil
	}
	defer sb.Close()
	snl, err := sb.Netlink()
	if err != nil {
		return err
	}
	link, err := snl.LinkByName(ep.IfName)
	if err != nil {
		rep.add(ObjSandboxIf, ep.IfName, "missing from sandbox %s", sb)
		return nil
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		rep.add(ObjSandboxIf, ep.IfName, "is down in sandbox %s", sb)
		linksOK = false
	}
	have, err := prefixesOf(snl, link)
	if err != nil {
		return err
	}
	for _, p := range ep.Addresses {
		if !slices.Contains(have, p) {
			rep.add(ObjAddress, p.String(), "missing from %s in sandbox %s", ep.IfName, sb)
			linksOK = false
		}
	}
	for _, r := range ep.Routes {
		ok, err := hasRoute(snl, link, r)
		if err != nil {
			return err
		}
		if !ok {
			rep.add(ObjRoute, routeString(r), "missing from sandbox %s", sb)
		}
	}
	if err := h.checkNeighbors(n, ep, sb, rep, nil); err != nil {
		return err
	}
	if linksOK && h.usesEmbeddedDNS(n) && slices.Contains(ep.DNS, n.Gateway) {
		server := netip.AddrPortFrom(n.Gateway, 53)
		for _, name := range dnsNames(ep) {
			got, err := queryA(ctx, sb, server, name)
			if err != nil {
				rep.add(ObjDNS, name, "no answer from %s: %v", server, err)
				break // the server is down: one problem says it
			}
			if want := ep.Addr(false); want.IsValid() && !slices.Contains(got, want) {
				rep.add(ObjDNS, name, "%s answers %v, want %s", server, got, want)
			}
		}
	}
	return nil
}

func routeString(r Route) string { return fmt.Sprintf("%s via %s", r.Dst, r.Via) }

// hasRoute reports whether the sandbox has route r through link.
func hasRoute(nl *netlink.Handle, link netlink.Link, r Route) (bool, error) {
	fam := netlink.FAMILY_V4
	if r.Dst.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return nl.RouteList(link, fam) })
	if err != nil {
		return false, fmt.Errorf("listing routes: %w", err)
	}
	for _, x := range routes {
		ones := 0
		if x.Dst != nil {
			ones, _ = x.Dst.Mask.Size()
			if !x.Dst.IP.IsUnspecified() {
				continue
			}
		}
		gw, _ := netip.AddrFromSlice(x.Gw)
		if ones == r.Dst.Bits() && gw.Unmap() == r.Via {
			return true, nil
		}
	}
	return false, nil
}

// queryA asks the name server at server, from inside sb, for name's IPv4
// addresses.
func queryA(ctx context.Context, sb *netns.NS, server netip.AddrPort, name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, checkDNSTimeout)
	defer cancel()
	c, err := nsDial(sb)(ctx, "udp", server.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	co := &mdns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	for {
		r, err := co.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id != m.Id {
			continue
		}
		if r.Rcode != mdns.RcodeSuccess {
			return nil, fmt.Errorf("%s", mdns.RcodeToString[r.Rcode])
		}
		var out []netip.Addr
		for _, rr := range r.Answer {
			if a, ok := rr.(*mdns.A); ok {
				if ip, ok := netip.AddrFromSlice(a.A); ok {
					out = append(out, ip.Unmap())
				}
			}
		}
		return out, nil
	}
}

// MissingRules returns the firewall rules of ep's network and of ep
// (published ports) missing from the host namespace, each as the command
// that adds it. It satisfies diag.RuleChecker.
func (h *Host) MissingRules(ctx context.Context, ep *Endpoint) ([]string, error) {
	nrec, rec, err := h.checkTarget(ep)
	if err != nil {
		return nil, err
	}
	if nrec.Network.Driver != DriverBridge {
		return nil, nil
	}
	e := &rec.Endpoint
	missing, err := h.fw.Check(ctx, natNetwork(&nrec.Network), []nat.Endpoint{natEndpoint(e, e.Ports)})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range missing {
		out = append(out, r.Command())
	}
	return out, nil
}
