// 07-drivers: the same two sandboxes under each network driver, and what
// changes. Run as root:
//
//	go run ./examples/07-drivers [-keep]
//
// A driver decides how a sandbox's namespace is wired:
//
//   - bridge: its own namespace, a veth pair to a bridge in the host, an
//     address from the network's subnet, a default route via the bridge;
//   - host: no namespace of its own: it runs in the host's, shares its
//     interfaces, addresses and ports;
//   - none: its own namespace with loopback only: no way in or out;
//   - macvlan: its own namespace with a macvlan device on the host's uplink:
//     a MAC and an address of the physical network, no bridge, no NAT; the
//     physical network's router is its gateway (examples/macvlan has more);
//   - overlay: its own namespace on a bridge that a VXLAN device extends over
//     the physical network to other hosts: a and b share one subnet although
//     b lives on another host (examples/overlay has more).
//
// The lab: a "switch" namespace (a bridge) playing the physical network
// 203.0.113.0/24, with three machines plugged in by veth cables: the host
// (its "uplink", 203.0.113.1), "up" (another machine and the router,
// 203.0.113.2) and "host2" (a second host, 203.0.113.3, for the overlay);
// and two sandboxes a and b.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

func main() { guide.Main("ex07", run) }

// lab is what every case works with.
type lab struct {
	host, host2         *sandnet.Host
	hostNS, up, host2NS *netns.NS
	a, b                *netns.NS
}

// A case shows one driver. New drivers are added as more cases.
type driverCase struct {
	driver sandnet.Driver
	what   string
	run    func(ctx context.Context, l *lab) error
}

var cases = []driverCase{
	{sandnet.DriverBridge, "own namespaces, veths to a bridge, addresses from the subnet", bridgeCase},
	{sandnet.DriverHost, "the host's namespace itself: its interfaces, addresses and ports", hostCase},
	{sandnet.DriverNone, "own namespaces with loopback only", noneCase},
	{sandnet.DriverMacvlan, "own namespaces, each a machine of its own on the physical network", macvlanCase},
	{sandnet.DriverOverlay, "own namespaces on one subnet stretched across two hosts by VXLAN", overlayCase},
}

var (
	uplinkAddr = netip.MustParsePrefix("203.0.113.1/24") // the host on the "physical" network
	upAddr     = netip.MustParsePrefix("203.0.113.2/24") // another machine there, and the router
	host2Addr  = netip.MustParsePrefix("203.0.113.3/24") // a second host
)

func run(ctx context.Context, gl *guide.Lab) error {
	guide.Step(1, "the lab: a switch, the host, up and host2 plugged in, two sandboxes")
	var l lab
	var err error
	var sw *netns.NS
	for _, n := range []struct {
		short string
		ns    **netns.NS
	}{{"switch", &sw}, {"host", &l.hostNS}, {"up", &l.up}, {"host2", &l.host2NS}, {"a", &l.a}, {"b", &l.b}} {
		if *n.ns, err = gl.NewNS(ctx, n.short); err != nil {
			return err
		}
	}
	// The physical network: a bridge plays the switch, veth pairs the
	// cables. The host's end is "uplink", its network card.
	br, _, err := bridge.Ensure(ctx, sw, bridge.Config{Name: "sw"})
	if err != nil {
		return err
	}
	for i, m := range []struct {
		ns   *netns.NS
		dev  string
		addr netip.Prefix
	}{{l.hostNS, "uplink", uplinkAddr}, {l.up, "eth0", upAddr}, {l.host2NS, "eth0", host2Addr}} {
		port := fmt.Sprintf("port%d", i+1)
		if _, err := veth.Create(ctx, sw, veth.Pair{Name: port, PeerName: m.dev, PeerNS: m.ns, Master: br.Index, MasterName: "sw", Up: true}); err != nil {
			return err
		}
		if err := iface.AddAddr(ctx, m.ns, m.dev, m.addr); err != nil {
			return err
		}
		if err := iface.Up(ctx, m.ns, m.dev); err != nil {
			return err
		}
	}
	// Each host runs its own sandnet Host, with its own state, as two
	// machines would.
	for _, h := range []struct {
		ns   *netns.NS
		host **sandnet.Host
	}{{l.hostNS, &l.host}, {l.host2NS, &l.host2}} {
		dir, err := os.MkdirTemp("", "sandnet-ex07-")
		if err != nil {
			return err
		}
		gl.Defer(func(context.Context) { os.RemoveAll(dir) })
		// The machine's own resolvers stay out of the lab (see 05-dns).
		resolv := filepath.Join(dir, "host-resolv.conf")
		if err := os.WriteFile(resolv, nil, 0o644); err != nil {
			return err
		}
		cfg := sandnet.HostConfig{StateDir: filepath.Join(dir, "state"), ResolvConf: resolv, ResolvedConf: resolv, DNS: sandnet.DNSInProcess}
		if *h.host, err = sandnet.NewHostNS(h.ns, cfg); err != nil {
			return err
		}
		host := *h.host
		gl.Defer(func(context.Context) { host.Close() })
	}

	for i, c := range cases {
		guide.Step(2+i, "driver %s: %s", c.driver, c.what)
		if err := c.run(ctx, &l); err != nil {
			return fmt.Errorf("driver %s: %w", c.driver, err)
		}
	}
	fmt.Println("\n07-drivers: OK")
	return nil
}

// attachBoth attaches a and b (or, for host, the host namespace twice, as
// two containers started with --network host) and returns a function that
// detaches them and removes the network.
func attachBoth(ctx context.Context, l *lab, n sandnet.Network, sbs ...*netns.NS) ([]*sandnet.Endpoint, func() error, error) {
	var eps []*sandnet.Endpoint
	undo := func() error {
		for _, ep := range eps {
			if err := l.host.Detach(ctx, ep); err != nil {
				return err
			}
		}
		return l.host.RemoveNetwork(ctx, n.Name)
	}
	for i, sb := range sbs {
		id := string(rune('a' + i))
		ep, err := l.host.AttachNS(ctx, sb, n, sandnet.AttachOptions{SandboxID: id})
		if err != nil {
			return nil, nil, err
		}
		eps = append(eps, ep)
		guide.Say("%s: %s", id, describe(ep))
	}
	return eps, undo, nil
}

// describe says what an endpoint got, as Docker's inspect would.
func describe(ep *sandnet.Endpoint) string {
	s := fmt.Sprintf("namespace net:[%d]", ep.NetNSInode)
	if ep.IfName != "" {
		s += ", interface " + ep.IfName
	}
	s += fmt.Sprintf(", addresses %v", ep.Addresses)
	if ep.Gateway.IsValid() {
		s += ", gateway " + ep.Gateway.String()
	}
	return s
}

func bridgeCase(ctx context.Context, l *lab) error {
	n := sandnet.Network{Name: "ex07-bridge", Subnet: netip.MustParsePrefix("10.70.0.0/24")}
	eps, undo, err := attachBoth(ctx, l, n, l.a, l.b)
	if err != nil {
		return err
	}
	if _, err := guide.Look(ctx, l.a, "ip", "-br", "addr"); err != nil {
		return err
	}
	if err := ping(ctx, l.a, eps[1].Addr(false)); err != nil {
		return err
	}
	guide.OK("a and b each have their own eth0 and address, and reach each other over the bridge")
	return undo()
}

func hostCase(ctx context.Context, l *lab) error {
	n := sandnet.Network{Name: "ex07-host", Driver: sandnet.DriverHost}
	eps, undo, err := attachBoth(ctx, l, n, l.hostNS, l.hostNS)
	if err != nil {
		return err
	}
	if _, err := guide.Look(ctx, l.hostNS, "ip", "-br", "addr"); err != nil {
		return err
	}
	if eps[0].NetNSInode != eps[1].NetNSInode || eps[0].Addr(false) != uplinkAddr.Addr() {
		return fmt.Errorf("host endpoints %v and %v do not share the host's namespace and address", eps[0], eps[1])
	}
	guide.OK("both report the host's own address %s: nothing was created", uplinkAddr)
	// A server in "a" listens on the host's ports: reachable from the
	// physical network at the host's address with no port publishing...
	addr := netip.AddrPortFrom(netip.IPv4Unspecified(), 8080)
	ln, err := listen(l.hostNS, addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := echo(l.up, netip.AddrPortFrom(uplinkAddr.Addr(), 8080)); err != nil {
		return err
	}
	guide.OK("a server of a on port 8080 answers at %s:8080 from the up machine, no NAT involved", uplinkAddr.Addr())
	// ...and b, sharing the same ports, cannot listen on 8080 too.
	if ln2, err := listen(l.hostNS, addr); err == nil {
		ln2.Close()
		return fmt.Errorf("b could listen on port 8080 as well")
	} else {
		guide.OK("b cannot listen on 8080 as well: %v", err)
	}
	return undo()
}

func noneCase(ctx context.Context, l *lab) error {
	n := sandnet.Network{Name: "ex07-none", Driver: sandnet.DriverNone}
	_, undo, err := attachBoth(ctx, l, n, l.a, l.b)
	if err != nil {
		return err
	}
	if _, err := guide.Look(ctx, l.a, "ip", "-br", "addr"); err != nil {
		return err
	}
	if err := ping(ctx, l.a, netip.MustParseAddr("127.0.0.1")); err != nil {
		return err
	}
	if _, err := guide.Look(ctx, l.a, "ip", "route", "get", upAddr.Addr().String()); err == nil {
		return fmt.Errorf("a sandbox on none has a route to %s", upAddr.Addr())
	}
	guide.OK("a has loopback only: 127.0.0.1 answers, everything else is unreachable")
	return undo()
}

func macvlanCase(ctx context.Context, l *lab) error {
	// The sandboxes join the physical network itself: its subnet, its
	// router (up) as their gateway, addresses from a range no other machine
	// uses.
	n := sandnet.Network{
		Name: "ex07-macvlan", Driver: sandnet.DriverMacvlan, Parent: "uplink",
		Subnet: netip.MustParsePrefix("203.0.113.0/24"), Gateway: upAddr.Addr(),
		IPRange: netip.MustParsePrefix("203.0.113.64/28"),
	}
	eps, undo, err := attachBoth(ctx, l, n, l.a, l.b)
	if err != nil {
		return err
	}
	if _, err := guide.Look(ctx, l.a, "ip", "-d", "-br", "link", "show", "eth0"); err != nil {
		return err
	}
	if err := ping(ctx, l.a, eps[1].Addr(false)); err != nil {
		return err
	}
	if err := ping(ctx, l.up, eps[0].Addr(false)); err != nil {
		return err
	}
	neigh, err := guide.Look(ctx, l.up, "ip", "neigh", "show", eps[0].Addr(false).String())
	if err != nil {
		return err
	}
	if !strings.Contains(neigh, eps[0].MAC) {
		return fmt.Errorf("up does not know a by its own MAC %s: %s", eps[0].MAC, neigh)
	}
	guide.OK("a and b are machines on the physical network: up (the router) reaches a directly, at a's own MAC %s", eps[0].MAC)
	guide.Say("No bridge, no veth, no NAT in the host. The one catch: the host itself cannot\n" +
		"reach its macvlan sandboxes through its uplink (see examples/macvlan).")
	return undo()
}

func overlayCase(ctx context.Context, l *lab) error {
	// The same network on both hosts: same VNI and subnet; each host its
	// own underlay address, its own slice of the subnet, the other as peer.
	def := func(self, peer netip.Prefix, rng string) sandnet.Network {
		return sandnet.Network{
			Name: "ex07-overlay", Driver: sandnet.DriverOverlay, VNI: 70,
			Subnet:   netip.MustParsePrefix("10.71.0.0/24"),
			IPRange:  netip.MustParsePrefix(rng),
			Underlay: self.Addr(),
			Peers:    []netip.Addr{peer.Addr()},
		}
	}
	n1 := def(uplinkAddr, host2Addr, "10.71.0.64/26")
	n2 := def(host2Addr, uplinkAddr, "10.71.0.128/26")
	epA, err := l.host.AttachNS(ctx, l.a, n1, sandnet.AttachOptions{SandboxID: "a"})
	if err != nil {
		return err
	}
	guide.Say("a (on host): %s", describe(epA))
	epB, err := l.host2.AttachNS(ctx, l.b, n2, sandnet.AttachOptions{SandboxID: "b"})
	if err != nil {
		return err
	}
	guide.Say("b (on host2): %s", describe(epB))
	if _, err := guide.Look(ctx, l.hostNS, "ip", "-d", "-br", "link", "show", "type", "vxlan"); err != nil {
		return err
	}
	if err := ping(ctx, l.a, epB.Addr(false)); err != nil {
		return err
	}
	guide.OK("a (host) reaches b (host2) on 10.71.0.0/24: Ethernet frames travel inside UDP between %s and %s; the MTU is %d, 50 bytes less for the wrapping",
		uplinkAddr.Addr(), host2Addr.Addr(), epA.MTU)
	for _, d := range []struct {
		h  *sandnet.Host
		ep *sandnet.Endpoint
		n  string
	}{{l.host, epA, n1.Name}, {l.host2, epB, n2.Name}} {
		if err := d.h.Detach(ctx, d.ep); err != nil {
			return err
		}
		if err := d.h.RemoveNetwork(ctx, d.n); err != nil {
			return err
		}
	}
	return nil
}

func ping(ctx context.Context, from *netns.NS, to netip.Addr) error {
	return guide.Reach(ctx, from, to)
}

// listen opens a TCP echo server inside ns: a socket belongs to the
// namespace it was created in, wherever the goroutine serving it runs.
func listen(ns *netns.NS, addr netip.AddrPort) (net.Listener, error) {
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln, nil
}

// echo dials addr from inside ns and checks the echo.
func echo(ns *netns.NS, addr netip.AddrPort) error {
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr.String(), 3*time.Second); return err }); err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := "hello from up\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	reply := make([]byte, len(msg))
	if _, err := io.ReadFull(c, reply); err != nil {
		return err
	}
	if string(reply) != msg {
		return fmt.Errorf("echo from %s: %q", addr, reply)
	}
	return nil
}
