package diag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/netns"
)

// Status is the outcome of one check.
type Status string

// The outcomes. Skip means the check did not apply, or a check it depends
// on failed (then Result.BlockedBy names it).
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// The checks, in the order Check runs them.
const (
	CheckNamespace  = "namespace"       // the namespace exists and is the endpoint's
	CheckInterface  = "interface"       // an eth0-like interface is there
	CheckLinkUp     = "link-up"         // it is administratively up
	CheckAddress    = "address"         // it has its address(es)
	CheckRoute      = "default-route"   // a default route, via an on-link gateway
	CheckBridgePort = "bridge-port"     // the host-side veth is up, on the bridge, forwarding
	CheckGatewayIP  = "gateway-address" // the bridge carries the gateway address
	CheckGateway    = "gateway"         // the gateway answers (ARP and ICMP echo)
	CheckNeighbors  = "neighbor-proxy"  // the bridge answers ARP for the sandbox, which knows its gateway's MAC
	CheckResolvConf = "resolv-conf"     // resolv.conf exists and names servers
	CheckDNSServers = "dns-servers"     // each server is routed to and answers
	CheckDNSResolve = "dns-resolve"     // a name resolves
	CheckForwarding = "ip-forward"      // the host namespace forwards IPv4 (and IPv6)
	CheckFirewall   = "forward-rules"   // FORWARD policy and rules let the sandbox out
	CheckNATRules   = "nat-rules"       // masquerade and published-port rules are present
)

// Result is one check's outcome with a one-line reason that says what is
// wrong and what to do.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Reason string `json:"reason"`
	// BlockedBy names the failed check this one depends on, when skipped for it.
	BlockedBy string `json:"blockedBy,omitempty"`
}

func (r Result) String() string { return fmt.Sprintf("%-4s %-16s %s", r.Status, r.Name, r.Reason) }

// RuleChecker reports which of an endpoint's firewall rules (masquerade for
// its network, DNAT and filter rules for its published ports) are missing
// from the host namespace, each as the command that would add it.
// HostRules is the one a Host gives.
type RuleChecker interface {
	MissingRules(ctx context.Context, ep *sandnet.Endpoint) ([]string, error)
}

// HostRules is the RuleChecker of h: the firewall rules h.Check finds
// missing for the endpoint and its network.
func HostRules(h *sandnet.Host) RuleChecker { return hostRules{h} }

type hostRules struct{ h *sandnet.Host }

func (r hostRules) MissingRules(ctx context.Context, ep *sandnet.Endpoint) ([]string, error) {
	rep, err := r.h.Check(ctx, ep)
	return missingRules(rep), err
}

// missingRules are the rules a CheckReport finds missing, as commands.
func missingRules(rep sandnet.CheckReport) []string {
	var out []string
	for _, p := range rep.Problems {
		if p.Object == sandnet.ObjRule {
			out = append(out, p.Name)
		}
	}
	return out
}

// CheckOptions says what Check knows besides the sandbox namespace.
type CheckOptions struct {
	// Host, when set, supplies the sandbox's endpoint and the host namespace
	// for the host-side checks (bridge port, forwarding, FORWARD rules);
	// without it those checks are skipped.
	Host *sandnet.Host
	// Endpoint is the attachment to check; default: the sandbox's endpoint
	// on Network (any network if ""), found through Host.
	Endpoint *sandnet.Endpoint
	Network  string
	// Rules checks the network's firewall rules; without it nat-rules is skipped.
	Rules RuleChecker
	// ResolveName is the name dns-resolve asks for; default: the endpoint's
	// hostname. Without either, dns-resolve is skipped.
	ResolveName string
	// Timeout bounds each probe (echo, DNS query); default 2s.
	Timeout time.Duration
}

// Failed reports whether any result is a failure.
func Failed(rs []Result) bool {
	return slices.ContainsFunc(rs, func(r Result) bool { return r.Status == Fail })
}

// Find returns the result of the check called name.
func Find(rs []Result, name string) (Result, bool) {
	i := slices.IndexFunc(rs, func(r Result) bool { return r.Name == name })
	if i < 0 {
		return Result{}, false
	}
	return rs[i], true
}

// checker is one run of the checklist.
type checker struct {
	ctx     context.Context
	sb      *netns.NS
	opts    CheckOptions
	nl      *netlink.Handle
	ep      *sandnet.Endpoint
	net     *sandnet.Network
	hostNS  *netns.NS
	link    netlink.Link
	gw      netip.Addr
	rc      ResolvConf
	results []Result
	// report is Host.Check of the endpoint, run once for every check
	// that filters it (neighbor-proxy, nat-rules).
	report *hostReport
}

type hostReport struct {
	h   *sandnet.Host
	rep sandnet.CheckReport
	err error
}

// hostCheck returns h.Check of the endpoint, running it on the first call.
func (c *checker) hostCheck(h *sandnet.Host) (sandnet.CheckReport, error) {
	if c.report == nil || c.report.h != h {
		rep, err := h.Check(c.ctx, c.ep)
		c.report = &hostReport{h: h, rep: rep, err: err}
	}
	return c.report.rep, c.report.err
}

type check struct {
	name string
	deps []string
	fn   func(*checker) (Status, string)
}

// checks is the checklist. A check is skipped when one of deps failed (or
// was skipped because of a failure), so one broken thing fails one check.
var checks = []check{
	{CheckNamespace, nil, (*checker).namespace},
	{CheckInterface, []string{CheckNamespace}, (*checker).iface},
	{CheckLinkUp, []string{CheckInterface}, (*checker).linkUp},
	{CheckAddress, []string{CheckInterface}, (*checker).address},
	{CheckRoute, []string{CheckLinkUp, CheckAddress}, (*checker).route},
	{CheckBridgePort, []string{CheckLinkUp}, (*checker).bridgePort},
	{CheckGatewayIP, nil, (*checker).gatewayAddr},
	{CheckGateway, []string{CheckLinkUp, CheckAddress, CheckBridgePort, CheckGatewayIP}, (*checker).gateway},
	{CheckNeighbors, []string{CheckBridgePort, CheckGatewayIP}, (*checker).neighborProxy},
	{CheckResolvConf, []string{CheckNamespace}, (*checker).resolvConf},
	{CheckDNSServers, []string{CheckResolvConf}, (*checker).dnsServers},
	{CheckDNSResolve, []string{CheckDNSServers}, (*checker).dnsResolve},
	{CheckForwarding, nil, (*checker).forwarding},
	{CheckFirewall, nil, (*checker).firewall},
	{CheckNATRules, nil, (*checker).natRules},
}

// Check walks the troubleshooting checklist for the sandbox sb and returns
// one result per check, in order (see the Check* names). It changes
// nothing; it sends an ICMP echo to the gateway and DNS queries to the
// sandbox's name servers from inside sb. A cancelled ctx skips the checks
// not run yet.
func Check(ctx context.Context, sb *netns.NS, opts CheckOptions) []Result {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	c := &checker{ctx: ctx, sb: sb, opts: opts, ep: opts.Endpoint}
	c.findEndpoint()
	for _, ck := range checks {
		if err := ctx.Err(); err != nil {
			c.results = append(c.results, Result{Name: ck.name, Status: Skip, Reason: "not run: " + err.Error()})
			continue
		}
		if dep := c.firstBlocked(ck.deps...); dep != "" {
			c.skipFor(ck.name, dep)
			continue
		}
		st, reason := ck.fn(c)
		if st == "" { // the check found a blocked dependency itself
			continue
		}
		c.results = append(c.results, Result{Name: ck.name, Status: st, Reason: reason})
	}
	return c.results
}

func (c *checker) skipFor(name, dep string) {
	c.results = append(c.results, Result{Name: name, Status: Skip, BlockedBy: dep, Reason: "skipped: " + dep + " failed"})
}

// firstBlocked returns the first of names that failed or was skipped for a failure.
func (c *checker) firstBlocked(names ...string) string {
	for _, n := range names {
		if r, ok := Find(c.results, n); ok && (r.Status == Fail || r.BlockedBy != "") {
			return n
		}
	}
	return ""
}

func (c *checker) findEndpoint() {
	h := c.opts.Host
	if h == nil {
		return
	}
	c.hostNS = h.NS()
	if c.ep == nil {
		eps, _ := h.EndpointsOf(c.sb)
		for _, ep := range eps {
			if c.opts.Network != "" && ep.Network != c.opts.Network {
				continue
			}
			if c.ep == nil || (c.ep.Driver != sandnet.DriverBridge && ep.Driver == sandnet.DriverBridge) {
				c.ep = ep
			}
		}
	}
	if c.ep != nil {
		if n, err := h.Network(c.ep.Network); err == nil {
			c.net = &n
		}
	}
}

// hostSide reports whether the host-side checks apply: a bridge endpoint
// recorded by a Host. When they do not, it says why.
func (c *checker) hostSide() (bool, string) {
	switch {
	case c.opts.Host == nil:
		return false, "no host given (sandnet doctor --host-ns NAME, or CheckOptions.Host)"
	case c.ep == nil:
		what := "any network"
		if c.opts.Network != "" {
			what = "network " + c.opts.Network
		}
		return false, fmt.Sprintf("sandnet has no endpoint of this sandbox on %s in %s", what, c.opts.Host.StateDir())
	case c.ep.Driver != sandnet.DriverBridge:
		return false, fmt.Sprintf("network %s uses the %s driver: no bridge", c.ep.Network, c.ep.Driver)
	}
	return true, ""
}

// outbound reports whether the endpoint's network forwards traffic out.
func (c *checker) outbound() (bool, string) {
	if ok, why := c.hostSide(); !ok {
		return false, why
	}
	if c.net != nil && c.net.Internal {
		return false, fmt.Sprintf("network %s is internal: no traffic out by design", c.ep.Network)
	}
	return true, ""
}

func (c *checker) namespace() (Status, string) {
	if !netns.Alive(fmt.Sprintf("/proc/self/fd/%d", c.sb.Fd()), c.sb.Inode()) {
		return Fail, fmt.Sprintf("namespace %s is not open any more", c.sb)
	}
	nl, err := c.sb.Netlink()
	if err != nil {
		return Fail, fmt.Sprintf("cannot talk netlink in %s: %v (are you root?)", c.sb, err)
	}
	c.nl = nl
	if c.ep != nil && c.ep.NetNSInode != 0 && c.ep.NetNSInode != c.sb.Inode() {
		return Fail, fmt.Sprintf("endpoint %s on %s was made for net:[%d], this is net:[%d]: the sandbox was recreated; detach and attach it again",
			c.ep.ID, c.ep.Network, c.ep.NetNSInode, c.sb.Inode())
	}
	if c.sb.Name() != "" && !netns.Alive(c.sb.Path(), c.sb.Inode()) {
		return Fail, fmt.Sprintf("%s no longer names this namespace (deleted with ip netns del?)", c.sb.Path())
	}
	return Pass, fmt.Sprintf("net:[%d] at %s", c.sb.Inode(), c.sb.Path())
}

func (c *checker) iface() (Status, string) {
	if c.ep != nil && (c.ep.Driver == sandnet.DriverNone || c.ep.Driver == sandnet.DriverHost) {
		return Skip, fmt.Sprintf("network %s uses the %s driver: no interface of its own", c.ep.Network, c.ep.Driver)
	}
	links, err := nlwrap.Retry(func() ([]netlink.Link, error) { return c.nl.LinkList() })
	if err != nil {
		return Fail, fmt.Sprintf("listing links in %s: %v", c.sb, err)
	}
	want := ""
	if c.ep != nil {
		want = c.ep.IfName
	}
	for _, l := range links {
		if want != "" && l.Attrs().Name == want {
			c.link = l
		}
	}
	if want != "" && c.link == nil {
		return Fail, fmt.Sprintf("no interface %s in the sandbox though sandnet attached it to %s: detach and attach it again", want, c.ep.Network)
	}
	if c.link == nil {
		for _, l := range links {
			if l.Attrs().Flags&net.FlagLoopback != 0 {
				continue
			}
			if c.link == nil || l.Attrs().Name == "eth0" {
				c.link = l
			}
		}
	}
	if c.link == nil {
		return Fail, "the sandbox has only lo: attach it to a network (sandnet attach NS --net NAME)"
	}
	a := c.link.Attrs()
	return Pass, fmt.Sprintf("%s (%s, mtu %d, %s)", a.Name, c.link.Type(), a.MTU, a.HardwareAddr)
}

func (c *checker) linkUp() (Status, string) {
	if c.link == nil {
		return Skip, "no interface to look at"
	}
	name := c.link.Attrs().Name
	l, err := c.nl.LinkByName(name)
	if err != nil {
		return Fail, fmt.Sprintf("reading %s: %v", name, err)
	}
	c.link = l
	if l.Attrs().Flags&net.FlagUp == 0 {
		return Fail, fmt.Sprintf("%s is down: %s", name, c.sb.Shell("ip link set "+name+" up"))
	}
	if l.Attrs().OperState != netlink.OperUp {
		return Pass, fmt.Sprintf("%s is up, operational state %s (no carrier: its peer is down or gone)", name, l.Attrs().OperState)
	}
	return Pass, name + " is up"
}

// ifAddrs lists the addresses on the checked interface.
func (c *checker) ifAddrs() ([]netip.Prefix, error) {
	addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return c.nl.AddrList(c.link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && a.Scope == int(netlink.SCOPE_UNIVERSE) {
			ones, _ := a.Mask.Size()
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return out, nil
}

func (c *checker) address() (Status, string) {
	if c.link == nil {
		return Skip, "no interface to look at"
	}
	name := c.link.Attrs().Name
	have, err := c.ifAddrs()
	if err != nil {
		return Fail, fmt.Sprintf("listing addresses of %s: %v", name, err)
	}
	if c.ep != nil {
		for _, p := range c.ep.Addresses {
			if !slices.Contains(have, p) {
				return Fail, fmt.Sprintf("%s lacks %s that sandnet gave it on %s: %s", name, p, c.ep.Network, c.sb.Shell(fmt.Sprintf("ip addr add %s dev %s", p, name)))
			}
		}
	}
	if len(have) == 0 {
		return Fail, fmt.Sprintf("%s has no global address: attach the sandbox to a network, or %s", name, c.sb.Shell("ip addr add ADDR/LEN dev "+name))
	}
	return Pass, fmt.Sprintf("%s has %s", name, joinStr(have))
}

func (c *checker) route() (Status, string) {
	if c.net != nil && c.net.Internal {
		return Skip, fmt.Sprintf("network %s is internal: no default route by design", c.ep.Network)
	}
	name := c.link.Attrs().Name
	want := c.gwWanted()
	routes, err := nlwrap.Retry(func() ([]netlink.Route, error) { return c.nl.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return Fail, fmt.Sprintf("listing routes: %v", err)
	}
	var def *netlink.Route
	for i, r := range routes {
		if r.Dst == nil || (r.Dst.IP.IsUnspecified() && onesOf(r.Dst) == 0) {
			def = &routes[i]
			break
		}
	}
	via := "GATEWAY"
	if want.IsValid() {
		via = want.String()
	}
	if def == nil {
		return Fail, fmt.Sprintf("no default route: %s", c.sb.Shell(fmt.Sprintf("ip route add default via %s dev %s", via, name)))
	}
	gw, _ := netip.AddrFromSlice(def.Gw)
	gw = gw.Unmap()
	if !gw.IsValid() {
		return Fail, fmt.Sprintf("the default route has no gateway (a device route): %s", c.sb.Shell(fmt.Sprintf("ip route replace default via %s dev %s", via, name)))
	}
	c.gw = gw
	if def.LinkIndex != c.link.Attrs().Index {
		return Fail, fmt.Sprintf("the default route goes out of ifindex %d, not %s: %s", def.LinkIndex, name, c.sb.Shell(fmt.Sprintf("ip route replace default via %s dev %s", via, name)))
	}
	if want.IsValid() && gw != want {
		return Fail, fmt.Sprintf("the default route is via %s, but network %s's gateway is %s: %s", gw, c.ep.Network, want, c.sb.Shell(fmt.Sprintf("ip route replace default via %s dev %s", want, name)))
	}
	have, _ := c.ifAddrs()
	onLink := def.Flags&int(netlink.FLAG_ONLINK) != 0
	for _, p := range have {
		if p.Masked().Contains(gw) {
			onLink = true
		}
	}
	if !onLink {
		return Fail, fmt.Sprintf("gateway %s is not on-link: no address of %s covers it (%s); give %s an address in the gateway's subnet", gw, name, joinStr(have), name)
	}
	return Pass, fmt.Sprintf("default via %s dev %s", gw, name)
}

// gwWanted is the IPv4 gateway the sandbox should use: the endpoint's.
func (c *checker) gwWanted() netip.Addr {
	if c.ep != nil {
		return c.ep.Gateway
	}
	return netip.Addr{}
}

func (c *checker) bridgePort() (Status, string) {
	if ok, why := c.hostSide(); !ok {
		return Skip, why
	}
	ep, host := c.ep, c.hostNS
	hnl, err := host.Netlink()
	if err != nil {
		return Fail, err.Error()
	}
	veth, err := hnl.LinkByName(ep.HostIfName)
	if err != nil {
		return Fail, fmt.Sprintf("host-side veth %s is gone from %s: detach and attach the sandbox again", ep.HostIfName, host)
	}
	br, err := hnl.LinkByName(ep.Bridge)
	if err != nil {
		return Fail, fmt.Sprintf("bridge %s of network %s is gone from %s: remove and re-create the network", ep.Bridge, ep.Network, host)
	}
	if veth.Attrs().Flags&net.FlagUp == 0 {
		return Fail, fmt.Sprintf("host-side veth %s is down: %s", ep.HostIfName, host.Shell("ip link set "+ep.HostIfName+" up"))
	}
	if veth.Attrs().MasterIndex != br.Attrs().Index {
		return Fail, fmt.Sprintf("host-side veth %s is not a port of bridge %s: %s", ep.HostIfName, ep.Bridge, host.Shell(fmt.Sprintf("ip link set %s master %s", ep.HostIfName, ep.Bridge)))
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		return Fail, fmt.Sprintf("bridge %s is down: %s", ep.Bridge, host.Shell("ip link set "+ep.Bridge+" up"))
	}
	state, err := PortState(host, veth.Attrs().Index)
	if err != nil {
		return Fail, fmt.Sprintf("reading the bridge port state of %s: %v", ep.HostIfName, err)
	}
	if state != "forwarding" {
		return Fail, fmt.Sprintf("port %s of bridge %s is %s, not forwarding: wait for STP, or turn STP off: %s", ep.HostIfName, ep.Bridge, state, host.Shell("ip link set "+ep.Bridge+" type bridge stp_state 0"))
	}
	return Pass, fmt.Sprintf("%s is up on bridge %s, forwarding", ep.HostIfName, ep.Bridge)
}

func (c *checker) gatewayAddr() (Status, string) {
	if ok, why := c.hostSide(); !ok {
		return Skip, why
	}
	ep := c.ep
	hnl, err := c.hostNS.Netlink()
	if err != nil {
		return Fail, err.Error()
	}
	br, err := hnl.LinkByName(ep.Bridge)
	if err != nil {
		return Fail, fmt.Sprintf("bridge %s of network %s is gone from %s: remove and re-create the network", ep.Bridge, ep.Network, c.hostNS)
	}
	addrs, err := nlwrap.Retry(func() ([]netlink.Addr, error) { return hnl.AddrList(br, netlink.FAMILY_ALL) })
	if err != nil {
		return Fail, fmt.Sprintf("listing addresses of %s: %v", ep.Bridge, err)
	}
	for _, gw := range []netip.Addr{ep.Gateway, ep.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		found := slices.ContainsFunc(addrs, func(a netlink.Addr) bool {
			ip, _ := netip.AddrFromSlice(a.IP)
			return ip.Unmap() == gw
		})
		if !found {
			bits := 24
			for _, p := range ep.Addresses {
				if p.Addr().Is4() == gw.Is4() {
					bits = p.Bits()
				}
			}
			return Fail, fmt.Sprintf("bridge %s lacks the gateway address %s: %s", ep.Bridge, gw, c.hostNS.Shell(fmt.Sprintf("ip addr add %s/%d dev %s", gw, bits, ep.Bridge)))
		}
	}
	return Pass, fmt.Sprintf("bridge %s carries %s", ep.Bridge, joinStr(nonZero(ep.Gateway, ep.Gateway6)))
}

func (c *checker) gateway() (Status, string) {
	gw := c.gwWanted()
	if !gw.IsValid() {
		gw = c.gw
	}
	if !gw.IsValid() {
		return Skip, "no IPv4 gateway known (no endpoint and no default route)"
	}
	if c.link == nil {
		return Skip, "no interface to look at"
	}
	name := c.link.Attrs().Name
	err := Ping(c.ctx, c.sb, gw, c.opts.Timeout)
	if err != nil && c.forgetNeigh(gw) {
		// The cached answer may be older than the fault: ask ARP afresh.
		err = Ping(c.ctx, c.sb, gw, c.opts.Timeout)
	}
	neigh := c.neighState(gw)
	if err == nil {
		return Pass, fmt.Sprintf("%s answers ping from the sandbox (neighbour %s)", gw, neigh)
	}
	switch neigh {
	case "PERMANENT":
		// sandnet sets the gateway's MAC: nothing was asked, so the
		// entry says nothing about whether the gateway is there.
		return Fail, fmt.Sprintf("%s does not answer on %s (its MAC is a permanent neighbour entry, so ARP was not asked; ping: %v): is %s the gateway, on the bridge, and is the host side of %s up?", gw, name, err, gw, name)
	case "REACHABLE", "STALE", "DELAY", "PROBE":
		return Fail, fmt.Sprintf("%s answers ARP on %s but not ping (%v): an INPUT rule in the host namespace may drop ICMP", gw, name, err)
	}
	return Fail, fmt.Sprintf("%s does not answer on %s (ARP %s, ping: %v): is %s the gateway, on the bridge, and is the host side of %s up?", gw, name, neigh, err, gw, name)
}

// forgetNeigh drops a learned (not permanent) neighbour entry for ip, as
// `ip neigh del IP dev IF` would, and reports whether there was one.
func (c *checker) forgetNeigh(ip netip.Addr) bool {
	ns, err := nlwrap.Retry(func() ([]netlink.Neigh, error) { return c.nl.NeighList(c.link.Attrs().Index, netlink.FAMILY_V4) })
	if err != nil {
		return false
	}
	for _, n := range ns {
		if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == ip && n.State&netlink.NUD_PERMANENT == 0 {
			return c.nl.NeighDel(&n) == nil
		}
	}
	return false
}

func (c *checker) neighState(ip netip.Addr) string {
	ns, err := nlwrap.Retry(func() ([]netlink.Neigh, error) { return c.nl.NeighList(c.link.Attrs().Index, netlink.FAMILY_V4) })
	if err != nil {
		return "unknown"
	}
	for _, n := range ns {
		if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == ip {
			return neighState(n.State)
		}
	}
	return "none"
}

func (c *checker) resolvConf() (Status, string) {
	rc, err := ReadResolvConf(c.sb)
	if err != nil {
		return Fail, fmt.Sprintf("reading %s: %v", rc.Path, err)
	}
	c.rc = rc
	fix := rc.Path
	if c.sb.Name() != "" {
		fix = fmt.Sprintf("%s/%s/resolv.conf", EtcNetns, c.sb.Name())
	}
	if rc.Missing {
		return Fail, fmt.Sprintf("%s does not exist: write %s with a nameserver line", rc.Path, fix)
	}
	if len(rc.Nameservers) == 0 {
		return Fail, fmt.Sprintf("%s lists no nameserver: add one to %s", rc.Path, fix)
	}
	return Pass, fmt.Sprintf("%s: nameserver %s", rc.Path, joinStr(rc.Nameservers))
}

func (c *checker) dnsServers() (Status, string) {
	var bad []string
	viaGateway := false
	for _, s := range c.rc.Nameservers {
		if !s.IsLoopback() {
			viaGateway = true
		}
	}
	if viaGateway {
		if dep := c.firstBlocked(CheckLinkUp, CheckAddress, CheckGateway); dep != "" {
			c.skipFor(CheckDNSServers, dep)
			return "", ""
		}
	}
	for _, s := range c.rc.Nameservers {
		if _, err := c.nl.RouteGet(s.AsSlice()); err != nil {
			bad = append(bad, fmt.Sprintf("no route to %s from the sandbox (%v)", s, err))
			continue
		}
		if _, err := Query(c.ctx, c.sb, s, ".", "NS", c.opts.Timeout); err != nil {
			if c.opts.Host != nil && c.ep != nil && (s == c.ep.Gateway || s == c.ep.Gateway6) {
				// The network's own name server: say whether it runs at all.
				if up, why := c.opts.Host.NameServerUp(c.ctx, c.ep.Network); !up {
					bad = append(bad, why)
					continue
				}
			}
			bad = append(bad, fmt.Sprintf("%s does not answer DNS on port 53 (%v)", s, err))
		}
	}
	if len(bad) > 0 {
		return Fail, fmt.Sprintf("%s: fix the nameserver lines of %s or start the server", strings.Join(bad, "; "), c.rc.Path)
	}
	return Pass, fmt.Sprintf("%s answer%s DNS queries from the sandbox", joinStr(c.rc.Nameservers), plural(len(c.rc.Nameservers), "s", ""))
}

func (c *checker) dnsResolve() (Status, string) {
	name := c.opts.ResolveName
	if name == "" && c.ep != nil {
		name = c.ep.Hostname
	}
	if name == "" {
		return Skip, "no name to resolve: give one (sandnet doctor --resolve NAME) or attach with --name"
	}
	candidates := []string{name}
	if !strings.Contains(strings.TrimSuffix(name, "."), ".") {
		for _, s := range c.rc.Search {
			candidates = append(candidates, name+"."+s)
		}
	}
	var last string
	for _, s := range c.rc.Nameservers {
		for _, n := range candidates {
			m, err := Query(c.ctx, c.sb, s, n, "A", c.opts.Timeout)
			if err != nil {
				last = fmt.Sprintf("asking %s for %s: %v", s, n, err)
				continue
			}
			if addrs := answerAddrs(m); len(addrs) > 0 {
				return Pass, fmt.Sprintf("%s is %s (from %s)", n, strings.Join(addrs, ", "), s)
			}
			last = fmt.Sprintf("%s says %s has no address (%s)", s, n, rcodeName(m))
		}
	}
	return Fail, fmt.Sprintf("%s does not resolve: %s: register the name with the network's resolver or check the search domains in %s", name, last, c.rc.Path)
}

func (c *checker) forwarding() (Status, string) {
	if ok, why := c.outbound(); !ok {
		return Skip, why
	}
	keys := []string{"net.ipv4.ip_forward"}
	if c.ep.Addr(true).IsValid() {
		keys = append(keys, "net.ipv6.conf.all.forwarding")
	}
	for _, k := range keys {
		v, err := c.hostNS.ReadSysctl(k)
		if err != nil {
			return Fail, fmt.Sprintf("reading %s in %s: %v", k, c.hostNS, err)
		}
		if v != "1" {
			return Fail, fmt.Sprintf("%s is %s in the host namespace %s: network %s cannot reach beyond the host: %s", k, v, c.hostNS, c.ep.Network, c.hostNS.Shell("sysctl -w "+k+"=1"))
		}
	}
	return Pass, strings.Join(keys, ", ") + " = 1 in " + c.hostNS.String()
}

func (c *checker) firewall() (Status, string) {
	if ok, why := c.outbound(); !ok {
		return Skip, why
	}
	src := c.ep.Addr(false)
	if !src.IsValid() {
		return Skip, "the endpoint has no IPv4 address"
	}
	if _, err := exec.LookPath("iptables-save"); err != nil {
		return Skip, "iptables-save is not installed: cannot read the FORWARD chain"
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	out, err := c.hostNS.Command(ctx, "iptables-save", "-t", "filter").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(out) == 0 {
			out = nil // no filter table: nothing filters
		} else {
			return Fail, fmt.Sprintf("reading the filter table in %s: %v", c.hostNS, err)
		}
	}
	v := EvalForward(ParseIptablesSave(string(out)), Packet{In: c.ep.Bridge, Src: src})
	switch v.Verdict {
	case "DROP", "REJECT":
		if v.Rule == "" {
			return Fail, fmt.Sprintf("FORWARD policy is DROP in %s and no rule accepts traffic from bridge %s: the network's forward rules are missing; e.g. %s",
				c.hostNS, c.ep.Bridge, c.hostNS.Shell(fmt.Sprintf("iptables -I FORWARD -i %s -j ACCEPT", c.ep.Bridge)))
		}
		return Fail, fmt.Sprintf("rule %q %ss traffic from %s (%s): remove it: %s", v.Rule, strings.ToLower(v.Verdict), c.ep.SandboxID, src,
			c.hostNS.Shell("iptables "+deleteCmd(v.Rule)))
	}
	reason := "accepted by the FORWARD policy ACCEPT"
	if v.Rule != "" {
		reason = fmt.Sprintf("accepted by %q", v.Rule)
	}
	if len(v.Partial) > 0 {
		reason += fmt.Sprintf("; note: %d rule(s) drop some of it, e.g. %q", len(v.Partial), v.Partial[0])
	}
	return Pass, reason
}

func (c *checker) natRules() (Status, string) {
	if c.opts.Rules == nil {
		return Skip, "no firewall checker"
	}
	if ok, why := c.hostSide(); !ok {
		return Skip, why
	}
	var missing []string
	var err error
	if hr, ok := c.opts.Rules.(hostRules); ok {
		var rep sandnet.CheckReport
		rep, err = c.hostCheck(hr.h)
		missing = missingRules(rep)
	} else {
		missing, err = c.opts.Rules.MissingRules(c.ctx, c.ep)
	}
	if err != nil {
		return Fail, fmt.Sprintf("reading network %s's firewall rules: %v", c.ep.Network, err)
	}
	if len(missing) > 0 {
		return Fail, fmt.Sprintf("missing in %s: %s: detach and attach the sandbox again to restore them", c.hostNS, strings.Join(missing, "; "))
	}
	return Pass, fmt.Sprintf("network %s's masquerade and published-port rules are present", c.ep.Network)
}

func onesOf(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

func joinStr[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}

func nonZero(as ...netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range as {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
