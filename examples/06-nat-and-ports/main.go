// 06-nat-and-ports: how a sandbox on a private subnet talks to the world,
// and how the world reaches a server inside it. Run as root:
//
//	go run ./examples/06-nat-and-ports [-keep]
//
// A sandbox's address (10.60.0.2 here) is private: the world has no route
// back to it. Two address translations in the host fix that, both done by
// netfilter's nat table and remembered per connection by conntrack:
//
//   - outbound, masquerade (source NAT): a packet leaving the host from the
//     sandbox's subnet gets the host's own address as its source; replies
//     come back to the host, which translates them back;
//   - inbound, published ports (destination NAT, Docker's `-p 8080:80`): a
//     packet for the host's port 8080 gets the sandbox's address and port 80
//     as its destination. The source is left alone, so the sandbox's server
//     sees the real client.
//
// The lab: a host namespace, a sandbox "web" on a bridge network
// (10.60.0.0/24), and an "up" namespace playing the internet on the host's
// uplink (203.0.113.0/24, a documentation range): the host's default route
// goes via up, and up knows no route to 10.60.0.0/24.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/tools"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

func main() { guide.Main("ex06", run) }

var (
	uplink   = netip.MustParsePrefix("203.0.113.1/24") // the host's public address
	internet = netip.MustParsePrefix("203.0.113.2/24") // a server out there
	network  = sandnet.Network{Name: "ex06", Subnet: netip.MustParsePrefix("10.60.0.0/24")}
)

func run(ctx context.Context, lab *guide.Lab) error {
	guide.Step(1, "three namespaces: host, web (the sandbox), up (the internet)")
	hostNS, err := lab.NewNS(ctx, "host")
	if err != nil {
		return err
	}
	web, err := lab.NewNS(ctx, "web")
	if err != nil {
		return err
	}
	up, err := lab.NewNS(ctx, "up")
	if err != nil {
		return err
	}

	guide.Step(2, "the host's uplink to the internet, and its default route")
	if _, err := veth.Create(ctx, hostNS, veth.Pair{Name: "uplink", PeerName: "eth0", PeerNS: up}); err != nil {
		return err
	}
	for _, end := range []struct {
		ns   *netns.NS
		dev  string
		addr netip.Prefix
	}{{hostNS, "uplink", uplink}, {up, "eth0", internet}} {
		if err := iface.AddAddr(ctx, end.ns, end.dev, end.addr); err != nil {
			return err
		}
		if err := iface.Up(ctx, end.ns, end.dev); err != nil {
			return err
		}
	}
	// A real host's loopback is always up; a new namespace's is not.
	if err := iface.Up(ctx, hostNS, "lo"); err != nil {
		return err
	}
	if err := iface.AddRoute(ctx, hostNS, iface.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: internet.Addr(), Dev: "uplink"}); err != nil {
		return err
	}
	routes, err := guide.Look(ctx, up, "ip", "route")
	if err != nil {
		return err
	}
	if strings.Contains(routes, "10.60.") || strings.Contains(routes, "default") {
		return fmt.Errorf("up has a route to the sandboxes: %s", routes)
	}
	guide.OK("up knows only its own link: anything it sends to 10.60.0.0/24 has nowhere to go")

	guide.Step(3, "attach web with a published port, -p 8080:80, and one only for the host, -p 127.0.0.1:8081:81")
	var ports []sandnet.PortMapping
	for _, spec := range []string{"8080:80", "127.0.0.1:8081:81"} {
		p, err := sandnet.ParsePort(spec) // Docker's -p syntax
		if err != nil {
			return err
		}
		ports = append(ports, p...)
	}
	dir, err := os.MkdirTemp("", "sandnet-ex06-")
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { os.RemoveAll(dir) })
	resolv := filepath.Join(dir, "host-resolv.conf") // the machine's resolvers stay out of the lab
	if err := os.WriteFile(resolv, nil, 0o644); err != nil {
		return err
	}
	// sandnet's default firewall backend is nftables (one map element per
	// published port); this guide shows the classic iptables rules, as
	// Docker's documentation does, so it asks for the iptables backend
	// where iptables is installed. Without it, the same NAT is made with
	// nftables, and the traffic below proves it either way.
	backend := "iptables"
	if !tools.Installed("iptables") {
		backend = ""
		guide.Say("(%s: sandnet uses its nftables backend, through netlink;\n"+
			"the iptables rules below are not shown, the traffic proves the NAT.)", tools.NotFound("iptables"))
	}
	host, err := sandnet.NewHostNS(hostNS, sandnet.HostConfig{StateDir: filepath.Join(dir, "state"), ResolvConf: resolv, ResolvedConf: resolv, DNS: sandnet.DNSOff, FirewallBackend: backend})
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { host.Close() })
	guide.Say("Besides the bridge and the veth: ip_forward on (the host must route between\n" +
		"bridge and uplink), and iptables rules in sandnet's own chains (SANDNET-*).")
	ep, err := host.AttachNS(ctx, web, network, sandnet.AttachOptions{SandboxID: "web", Ports: ports})
	if err != nil {
		return err
	}
	webAddr := ep.Addr(false)
	guide.Say("web is %s; its published ports: %v", webAddr, ep.Ports)
	nat, err := guide.Look(ctx, hostNS, "iptables", "-t", "nat", "-S")
	if err != nil && !errors.Is(err, guide.ErrNotInstalled) {
		return err
	}
	guide.Say("POSTROUTING -> SANDNET-POSTROUTING: MASQUERADE what leaves 10.60.0.0/24 by another\n"+
		"interface than the bridge. PREROUTING and OUTPUT -> SANDNET-DNAT for packets to one\n"+
		"of the host's own addresses: port 8080 becomes %s:80, port 8081 becomes %s:81\n"+
		"but only when sent to 127.0.0.1, which only the host itself can do.", webAddr, webAddr)
	if backend == "iptables" {
		for _, want := range []string{"-j MASQUERADE", "--dport 8080", "--to-destination " + webAddr.String() + ":80"} {
			if !strings.Contains(nat, want) {
				return fmt.Errorf("the nat table lacks %q", want)
			}
		}
		guide.OK("the masquerade and DNAT rules are in the host's nat table")
	}

	guide.Step(4, "outbound: web connects to a server on the internet, which sees the host's address")
	who, err := serveWho(up, netip.AddrPortFrom(internet.Addr(), 9000))
	if err != nil {
		return err
	}
	defer who.Close()
	saw, err := askWho(web, netip.AddrPortFrom(internet.Addr(), 9000))
	if err != nil {
		return err
	}
	if saw != uplink.Addr().String() {
		return fmt.Errorf("the server on up saw %s, want the host's %s", saw, uplink.Addr())
	}
	guide.OK("web (%s) -> %s:9000: the server saw the client %s, the host's uplink address", webAddr, internet.Addr(), saw)
	guide.Say("conntrack remembers the translation, so the reply finds its way back to web:")
	ct, err := guide.Look(ctx, hostNS, "conntrack", "-L", "-p", "tcp", "--dport", "9000")
	switch {
	case errors.Is(err, guide.ErrNotInstalled):
	case err != nil:
		return err
	case !strings.Contains(ct, "src="+webAddr.String()) || !strings.Contains(ct, "dst="+uplink.Addr().String()):
		return fmt.Errorf("conntrack has no translated entry for web's connection")
	}
	guide.Say("The first src/dst pair is the packet as web sent it; the second is the reply\n"+
		"expected: from the server to the host's %s, which conntrack hands back to web.", uplink.Addr())

	guide.Step(5, "inbound: the internet connects to the host's port 8080, and reaches web's port 80")
	srv80, err := serveWho(web, netip.AddrPortFrom(netip.IPv4Unspecified(), 80))
	if err != nil {
		return err
	}
	defer srv80.Close()
	saw, err = askWho(up, netip.AddrPortFrom(uplink.Addr(), 8080))
	if err != nil {
		return err
	}
	if saw != internet.Addr().String() {
		return fmt.Errorf("web's server saw %s, want the real client %s", saw, internet.Addr())
	}
	guide.OK("up -> %s:8080 -> web's :80: web's server saw the real client, %s (no proxy in between)", uplink.Addr(), saw)

	guide.Step(6, "a port published on 127.0.0.1 serves the host itself, not the internet")
	srv81, err := serveWho(web, netip.AddrPortFrom(netip.IPv4Unspecified(), 81))
	if err != nil {
		return err
	}
	defer srv81.Close()
	saw, err = askWho(hostNS, netip.MustParseAddrPort("127.0.0.1:8081"))
	if err != nil {
		return err
	}
	guide.OK("the host -> 127.0.0.1:8081 -> web's :81 (web saw %s: the bridge's address, since 127.0.0.1 cannot leave the host)", saw)
	if saw, err := askWho(up, netip.AddrPortFrom(uplink.Addr(), 8081)); err == nil {
		return fmt.Errorf("up reached port 8081 (web saw %s)", saw)
	} else {
		guide.OK("up -> %s:8081: %v", uplink.Addr(), err)
	}

	if lab.Keep {
		guide.Say("\n-keep: web stays attached with its ports published.")
		fmt.Println("\n06-nat-and-ports: OK")
		return nil
	}
	guide.Step(7, "detach web and remove the network: the rules go with them")
	if err := host.Detach(ctx, ep); err != nil {
		return err
	}
	if err := host.RemoveNetwork(ctx, network.Name); err != nil {
		return err
	}
	nat, err = guide.Look(ctx, hostNS, "iptables", "-t", "nat", "-S")
	if err != nil && !errors.Is(err, guide.ErrNotInstalled) {
		return err
	}
	if strings.Contains(nat, "SANDNET") {
		return fmt.Errorf("sandnet rules left in the nat table")
	}
	if backend == "iptables" {
		guide.OK("no SANDNET chain or rule is left in the nat table")
	}
	fmt.Println("\n06-nat-and-ports: OK")
	return nil
}

// serveWho listens on addr inside ns (the socket belongs to ns) and
// answers every TCP client with the client's address as it sees it.
func serveWho(ns *netns.NS, addr netip.AddrPort) (net.Listener, error) {
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
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			c.Close()
		}
	}()
	return ln, nil
}

// askWho connects from inside ns to addr and returns what the server saw.
func askWho(ns *netns.NS, addr netip.AddrPort) (string, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr.String(), 3*time.Second); return err }); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}
