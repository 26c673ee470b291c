package sandnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/dnsrun"
	"github.com/sandnet/sandnet/netns"
)

// Object is a kind of object Check verifies; a Problem names one.
type Object string

// The kinds of object Check verifies.
const (
	ObjSandbox   Object = "sandbox"           // the sandbox namespace is alive, and the attach finished (else: GC's work)
	ObjBridge    Object = "bridge"            // the network's bridge exists, is up, carries the gateway address(es), and has the host settings it needs (forwarding, route_localnet)
	ObjHostVeth  Object = "host-veth"         // the host end exists, is up, is a port of the bridge with the flags it needs (hairpin or isolated)
	ObjSandboxIf Object = "sandbox-interface" // the sandbox's interface exists and is up
	ObjAddress   Object = "address"           // it carries the endpoint's addresses
	ObjRoute     Object = "route"             // the default route(s) via the gateway(s)
	ObjRule      Object = "rule"              // a firewall rule (network's or endpoint's)
	ObjLease     Object = "lease"             // the IPAM lease holds the addresses
	ObjPort      Object = "port"              // the port table holds the published port
	ObjDNS       Object = "dns"               // the network's name server answers the endpoint's names
	ObjNeighbor  Object = "neighbor"          // what answers address resolution: a permanent neighbour entry, a static FDB entry, proxy_arp_wifi on the port, the multicast querier
)

// Problem is one piece of an endpoint or its network that is missing or
// wrong in the kernel or the state dir.
type Problem struct {
	// Object is the kind of object (ObjHostVeth, ObjRule...).
	Object Object `json:"object"`
	// Name says which one: an interface, an address, a rule's command.
	Name string `json:"name"`
	// Detail says what is wrong with it.
	Detail string `json:"detail"`
	// Repairable is false for problems Repair cannot fix (the sandbox
	// namespace is gone, the attach never finished: GC's work).
	Repairable bool `json:"repairable"`
}

func (p Problem) String() string { return string(p.Object) + " " + p.Name + ": " + p.Detail }

// CheckReport lists what Check found missing for one endpoint (and its network).
type CheckReport struct {
	Network  string    `json:"network"`
	Endpoint string    `json:"endpoint"`
	Sandbox  string    `json:"sandbox"`
	Problems []Problem `json:"problems,omitempty"`
}

// OK reports whether nothing is missing.
func (r CheckReport) OK() bool { return len(r.Problems) == 0 }

func (r *CheckReport) add(obj Object, name, format string, args ...any) {
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
	nrec, err := h.st.ReadNetwork(ep.Network)
	if err != nil {
		return nil, nil, fmt.Errorf("checking endpoint of sandbox %q: network %q: %w", ep.SandboxID, ep.Network, err)
	}
	rec, err := h.st.ReadEndpoint(ep.Network, endpointIDOf(ep))
	if err != nil {
		return nil, nil, fmt.Errorf("checking endpoint of sandbox %q on network %q: %w", ep.SandboxID, ep.Network, err)
	}
	return nrec, rec, nil
}

// checkNetwork verifies the network's own objects, through its driver.
func (h *Host) checkNetwork(ctx context.Context, nrec *networkRecord, rep *CheckReport) error {
	drv, err := driverFor(nrec.Network.Driver)
	if err != nil {
		return err
	}
	return drv.checkNetwork(ctx, h, nrec, rep)
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

// checkEndpoint verifies the endpoint's own objects. view, when not nil,
// is what the driver read of the network once for many endpoints
// (driver.networkView).
func (h *Host) checkEndpoint(ctx context.Context, nrec *networkRecord, rec *endpointRecord, rep *CheckReport, view any) error {
	n, ep := &nrec.Network, &rec.Endpoint
	if rec.State != stateAttached {
		rep.Problems = append(rep.Problems, Problem{Object: ObjSandbox, Name: ep.ID, Detail: "the attach did not finish (run GC)"})
		return nil
	}
	if !netns.Alive(ep.NetNS, ep.NetNSInode) {
		rep.Problems = append(rep.Problems, Problem{Object: ObjSandbox, Name: ep.NetNS, Detail: "the namespace is gone (run GC)"})
		return nil
	}
	if traitsOf(n.Driver).ipam {
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
		held, err := h.st.PortsHeld(ctx, holderOf(ep), ep.Ports)
		if err != nil {
			return err
		}
		for _, p := range ep.Ports {
			if !slices.Contains(held, p) {
				rep.add(ObjPort, p.String(), "not in the port table")
			}
		}
	}
	drv, err := driverFor(n.Driver)
	if err != nil {
		return err
	}
	sb, sbErr := netns.Open(ep.NetNS)
	if sbErr == nil {
		defer sb.Close()
	}
	linksOK, err := drv.checkEndpoint(ctx, h, nrec, ep, sb, rep, view)
	if err != nil {
		return err
	}
	if sbErr != nil {
		rep.Problems = append(rep.Problems, Problem{Object: ObjSandbox, Name: ep.NetNS, Detail: sbErr.Error()})
		return nil
	}
	link, err := iface.Open(sb, ep.IfName)
	if err != nil {
		rep.add(ObjSandboxIf, ep.IfName, "missing from sandbox %s", sb)
		return nil
	}
	if !link.IsUp() {
		rep.add(ObjSandboxIf, ep.IfName, "is down in sandbox %s", sb)
		linksOK = false
	}
	noAddrs, noRoutes, err := link.Lacks(ep.Addresses, ep.Routes)
	for _, p := range noAddrs {
		rep.add(ObjAddress, p.String(), "missing from %s in sandbox %s", ep.IfName, sb)
		linksOK = false
	}
	for _, r := range noRoutes {
		rep.add(ObjRoute, routeString(r), "missing from sandbox %s", sb)
	}
	if err != nil {
		return err
	}
	if linksOK && h.usesEmbeddedDNS(n) && slices.Contains(ep.DNS, n.Gateway) {
		for _, w := range dnsrun.CheckNames(ctx, sb, netip.AddrPortFrom(n.Gateway, 53), dnsNames(ep), ep.Addr(false)) {
			rep.add(ObjDNS, w.Name, "%s", w.Detail)
		}
	}
	return nil
}

func routeString(r Route) string { return fmt.Sprintf("%s via %s", r.Dst, r.Via) }
