package sandnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

// firewallBackends are the nat backends the end-to-end tests run against;
// a new backend (nftables) adds itself here.
var firewallBackends = []struct {
	name string
	new  func(host *netns.NS) nat.Backend
}{
	{"iptables", func(ns *netns.NS) nat.Backend { return nat.NewIPTables(ns) }},
	{"nftables", func(ns *netns.NS) nat.Backend { return nat.NewNFTables(ns) }},
}

// natLab is a host namespace with an uplink to an "upstream" namespace
// playing the outside world: host 192.0.2.1 and fd00:ff::1, upstream
// 192.0.2.254 and fd00:ff::fe, the host's default routes via upstream.
// Upstream has no route to the sandboxes' subnets unless a test adds one.
type natLab struct {
	h       *Host
	hns, up *netns.NS
}

var (
	uplinkAddr  = "192.0.2.1"
	labUp       = "192.0.2.254"
	uplinkAddr6 = "fd00:ff::1"
	labUp6      = "fd00:ff::fe"
)

func newNATLab(t *testing.T, backend func(*netns.NS) nat.Backend) *natLab {
	t.Helper()
	hns := testns.New(t, "host")
	up := testns.New(t, "up")
	testns.Run(t, hns, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", up.Name())
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", uplinkAddr + "/24", "dev", "up0"},
		{"ip", "addr", "add", uplinkAddr6 + "/64", "dev", "up0", "nodad"},
		{"ip", "link", "set", "up0", "up"},
		{"ip", "route", "add", "default", "via", labUp},
		{"ip", "-6", "route", "add", "default", "via", labUp6},
	} {
		testns.Run(t, hns, c[0], c[1:]...)
	}
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", labUp + "/24", "dev", "eth0"},
		{"ip", "addr", "add", labUp6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "link", "set", "eth0", "up"},
	} {
		testns.Run(t, up, c[0], c[1:]...)
	}
	h := openTestHost(t, hns, HostConfig{StateDir: filepath.Join(t.TempDir(), "state"), Firewall: backend(hns)})
	return &natLab{h: h, hns: hns, up: up}
}

// serveWho runs a TCP and a UDP server on port inside ns (all addresses,
// both families) that answer each client with the client's address as
// the server sees it.
func serveWho(t *testing.T, ns *netns.NS, port int) {
	t.Helper()
	var (
		ln net.Listener
		pc net.PacketConn
	)
	if err := ns.Do(func() (err error) {
		if ln, err = net.Listen("tcp", ":"+strconv.Itoa(port)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", ":"+strconv.Itoa(port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
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
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.(*net.UDPAddr).AddrPort().Addr().Unmap().String()+"\n"), from)
		}
	}()
}

// whoTCP connects from ns to addr and returns the client address the
// server saw.
func whoTCP(ns *netns.NS, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// whoUDP sends datagrams from ns to addr until one is answered (three
// tries) and returns the client address the server saw.
func whoUDP(ns *netns.NS, addr string) (string, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 64)
	var err error
	for try := 0; try < 3; try++ {
		c.Write([]byte("who"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		var n int
		if n, err = c.Read(buf); err == nil {
			return strings.TrimSpace(string(buf[:n])), nil
		}
	}
	return "", err
}

func hp(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// firewallResidue returns the lines of iptables-save and ip6tables-save
// of ns that mention sandnet, and those of nft list ruleset.
func firewallResidue(t *testing.T, ns *netns.NS) []string {
	t.Helper()
	var left []string
	for _, l := range strings.Split(testns.Run(t, ns, "nft", "list", "ruleset"), "\n") {
		if strings.Contains(strings.ToLower(l), "sandnet") {
			left = append(left, "nft: "+l)
		}
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out := testns.Run(t, ns, cmd)
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(strings.ToLower(l), "sandnet") {
				left = append(left, cmd+": "+l)
			}
		}
	}
	return left
}

// TestNATEndToEnd runs every backend twice: with bridged traffic going
// through iptables (br_netfilter loaded and on in the host namespace) and
// without (ICC is then enforced by bridge port isolation).
func TestNATEndToEnd(t *testing.T) {
	for _, b := range firewallBackends {
		for _, brnf := range []string{"0", "1"} {
			t.Run(b.name+"/bridge-nf-call-iptables="+brnf, func(t *testing.T) {
				if b.name == "iptables" {
					testns.NeedProgram(t, "iptables backend", "iptables", "ip6tables")
				}
				testNATEndToEnd(t, b.new, brnf)
			})
		}
	}
}

func testNATEndToEnd(t *testing.T, backend func(*netns.NS) nat.Backend, brnf string) {
	ctx := context.Background()
	lab := newNATLab(t, backend)
	h := lab.h
	if _, err := lab.hns.ReadSysctl("net.bridge.bridge-nf-call-iptables"); err != nil {
		if brnf == "1" {
			t.Skip("br_netfilter is not loaded on this machine")
		}
	} else {
		for _, key := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"} {
			if _, err := lab.hns.Sysctl(key, brnf); err != nil {
				t.Fatal(err)
			}
		}
	}
	serveWho(t, lab.up, 7000)

	pub := Network{Name: "pub", Subnet: netip.MustParsePrefix("10.90.1.0/24"), Subnet6: netip.MustParsePrefix("fd00:90:1::/64")}
	other := Network{Name: "other", Subnet: netip.MustParsePrefix("10.90.2.0/24")}
	noicc := Network{Name: "noicc", Subnet: netip.MustParsePrefix("10.90.3.0/24"), NoICC: true}
	internal := Network{Name: "int", Subnet: netip.MustParsePrefix("10.90.4.0/24"), Internal: true}

	ports := func(specs ...string) []PortMapping {
		var ps []PortMapping
		for _, s := range specs {
			p, err := ParsePort(s)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p...)
		}
		return ps
	}
	var eps []*Endpoint
	sandbox := func(tag string, n Network, o AttachOptions) (*netns.NS, *Endpoint) {
		sb := testns.New(t, tag)
		serveWho(t, sb, 80)
		ep := mustAttach(t, h, sb, n, o)
		eps = append(eps, ep)
		return sb, ep
	}
	a, epA := sandbox("a", pub, AttachOptions{Ports: ports("8080:80", "8080:80/udp", "127.0.0.1:8081:80")})
	b, _ := sandbox("b", pub, AttachOptions{})
	d, epD := sandbox("d", other, AttachOptions{})
	e, epE := sandbox("e", noicc, AttachOptions{Ports: ports("8082:80")})
	f, epF := sandbox("f", noicc, AttachOptions{})
	g, _ := sandbox("g", internal, AttachOptions{})
	hh, epH := sandbox("h", internal, AttachOptions{})
	addrA, addrA6 := epA.Addr(false).String(), epA.Addr(true).String()

	ok := func(what, seen string, err error, want string) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if want != "" && seen != want {
			t.Errorf("%s: the server saw the client as %s, want %s", what, seen, want)
		}
	}
	refused := func(what string, from *netns.NS, addr string) {
		t.Helper()
		if seen, err := whoTCP(from, addr, time.Second); err == nil {
			t.Errorf("%s: connected (server saw %s), want no way through", what, seen)
		}
	}

	t.Run("outbound is masqueraded", func(t *testing.T) {
		seen, err := whoTCP(a, hp(labUp, 7000), 3*time.Second)
		ok("tcp a -> upstream", seen, err, uplinkAddr)
		seen, err = whoUDP(a, hp(labUp, 7000))
		ok("udp a -> upstream", seen, err, uplinkAddr)
		seen, err = whoTCP(a, hp(labUp6, 7000), 3*time.Second)
		ok("tcp6 a -> upstream", seen, err, uplinkAddr6)
		seen, err = whoTCP(e, hp(labUp, 7000), 3*time.Second)
		ok("tcp e (no icc) -> upstream", seen, err, uplinkAddr)
	})
	t.Run("published port from outside keeps the client address", func(t *testing.T) {
		seen, err := whoTCP(lab.up, hp(uplinkAddr, 8080), 3*time.Second)
		ok("tcp upstream -> host:8080", seen, err, labUp)
		seen, err = whoUDP(lab.up, hp(uplinkAddr, 8080))
		ok("udp upstream -> host:8080", seen, err, labUp)
		seen, err = whoTCP(lab.up, hp(uplinkAddr6, 8080), 3*time.Second)
		ok("tcp6 upstream -> [host]:8080", seen, err, labUp6)
		seen, err = whoTCP(lab.up, hp(uplinkAddr, 8082), 3*time.Second)
		ok("tcp upstream -> host:8082 (no-icc network)", seen, err, labUp)
	})
	t.Run("published port from the host itself", func(t *testing.T) {
		for _, addr := range []string{hp(uplinkAddr, 8080), hp("127.0.0.1", 8080), hp("10.90.1.1", 8080), hp("127.0.0.1", 8081), hp(uplinkAddr6, 8080)} {
			seen, err := whoTCP(lab.hns, addr, 3*time.Second)
			ok("host -> "+addr, seen, err, "")
		}
		seen, err := whoUDP(lab.hns, hp("127.0.0.1", 8080))
		ok("udp host -> 127.0.0.1:8080", seen, err, "")
	})
	t.Run("hairpin", func(t *testing.T) {
		seen, err := whoTCP(b, hp(uplinkAddr, 8080), 3*time.Second)
		ok("sibling b -> host:8080", seen, err, "")
		seen, err = whoTCP(a, hp(uplinkAddr, 8080), 3*time.Second)
		ok("a -> its own host:8080", seen, err, "")
		seen, err = whoTCP(a, hp(uplinkAddr6, 8080), 3*time.Second)
		ok("a -> its own [host6]:8080", seen, err, "")
		seen, err = whoTCP(f, hp(uplinkAddr, 8082), 3*time.Second)
		ok("isolated sibling f -> host:8082", seen, err, "")
		seen, err = whoTCP(d, hp(uplinkAddr, 8080), 3*time.Second)
		ok("other network's d -> host:8080", seen, err, "")
	})
	t.Run("port on 127.0.0.1 is not exposed", func(t *testing.T) {
		refused("host -> uplink address:8081", lab.hns, hp(uplinkAddr, 8081))
		refused("upstream -> host:8081", lab.up, hp(uplinkAddr, 8081))
		// Upstream routes 127.0.0.1 to the host (Docker's bug was to DNAT that).
		for _, key := range []string{"net.ipv4.conf.all.route_localnet", "net.ipv4.conf.eth0.route_localnet"} {
			if _, err := lab.up.Sysctl(key, "1"); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range [][]string{
			{"ip", "rule", "add", "pref", "100", "lookup", "local"},
			{"ip", "rule", "del", "pref", "0"},
			{"ip", "rule", "add", "pref", "10", "to", "127.0.0.1/32", "lookup", "200"},
			{"ip", "route", "add", "127.0.0.1/32", "via", uplinkAddr, "dev", "eth0", "table", "200"},
		} {
			testns.Run(t, lab.up, c[0], c[1:]...)
		}
		testns.Run(t, lab.hns, "iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-i", "up0", "-d", "127.0.0.1", "-p", "tcp", "--dport", "8081")
		refused("upstream -> 127.0.0.1:8081 routed via the host", lab.up, hp("127.0.0.1", 8081))
		out := testns.Run(t, lab.hns, "iptables", "-w", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n")
		if m := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s.*\sup0\s`).FindStringSubmatch(out); m == nil || m[1] == "0" {
			t.Errorf("the probe to 127.0.0.1 never reached the host, the test proves nothing:\n%s", out)
		}
		testns.Run(t, lab.up, "ip", "rule", "del", "pref", "10")
	})
	t.Run("isolation between networks", func(t *testing.T) {
		refused("d -> a directly", d, hp(addrA, 80))
		refused("a -> d directly", a, hp(epD.Addr(false).String(), 80))
		if err := testns.Ping(d, addrA); err == nil {
			t.Error("d pings a across networks")
		}
	})
	t.Run("no direct routing from outside", func(t *testing.T) {
		testns.Run(t, lab.up, "ip", "route", "add", "10.90.0.0/16", "via", uplinkAddr)
		testns.Run(t, lab.up, "ip", "-6", "route", "add", "fd00:90::/32", "via", uplinkAddr6)
		refused("upstream -> a:80 routed", lab.up, hp(addrA, 80))
		refused("upstream -> [a6]:80 routed", lab.up, hp(addrA6, 80))
	})
	t.Run("icc off", func(t *testing.T) {
		refused("e -> f", e, hp(epF.Addr(false).String(), 80))
		refused("f -> e", f, hp(epE.Addr(false).String(), 80))
		if err := testns.Ping(f, epE.Addr(false).String()); err == nil {
			t.Error("f pings e with ICC off")
		}
		if err := testns.Ping(f, "10.90.3.1"); err != nil {
			t.Errorf("f cannot ping its gateway with ICC off: %v", err)
		}
		seen, err := whoTCP(b, hp(epA.Addr(false).String(), 80), 3*time.Second)
		ok("b -> a with ICC on", seen, err, epB(eps).String())
	})
	t.Run("internal has no way out", func(t *testing.T) {
		testns.Run(t, g, "ip", "route", "add", "default", "via", "10.90.4.1")
		refused("g -> upstream (default route added by hand)", g, hp(labUp, 7000))
		refused("g -> host:8080 (another network's published port)", g, hp(uplinkAddr, 8080))
		refused("upstream -> g routed", lab.up, hp("10.90.4.2", 80))
		seen, err := whoTCP(g, hp(epH.Addr(false).String(), 80), 3*time.Second)
		ok("g -> h inside the internal network", seen, err, "")
		_ = hh
	})
	t.Run("port conflict", func(t *testing.T) {
		for _, spec := range []string{"8080:80", "127.0.0.1:8080:80", "[" + uplinkAddr6 + "]:8080:80"} {
			x := testns.New(t, "x")
			_, err := h.AttachNS(ctx, x, pub, AttachOptions{Ports: ports(spec)})
			var pc *PortConflictError
			if !errors.As(err, &pc) || !errors.Is(err, ErrInUse) {
				t.Fatalf("publishing %s again: %v, want a *PortConflictError", spec, err)
			}
			if pc.Holder.Sandbox != epA.SandboxID || pc.Holder.Network != "pub" {
				t.Errorf("conflict names %+v, want sandbox %s on pub", pc.Holder, epA.SandboxID)
			}
			if left := hostVeths(t, h); len(left) != len(eps)+1 { // + the uplink
				t.Errorf("veths after the failed attach: %v", left)
			}
		}
		// Another protocol or host address is free.
		x := testns.New(t, "x")
		ep := mustAttach(t, h, x, pub, AttachOptions{Ports: ports("8081:80/udp", "127.0.0.2:8081:80", "80")})
		if ep.Ports[2].HostPort == 0 {
			t.Errorf("no host port picked for %v", ep.Ports[2])
		}
		if err := h.Detach(ctx, ep); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("check reports nothing missing", func(t *testing.T) {
		missing, err := h.Firewall().Check(ctx, natNetwork(&epNet(t, h, "pub").Network), []nat.Endpoint{natEndpoint(epA, epA.Ports)})
		if err != nil || len(missing) > 0 {
			t.Errorf("Check = %v, %v", missing, err)
		}
	})

	for _, ep := range eps {
		if err := h.Detach(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	if left := firewallResidue(t, lab.hns); len(left) == 0 {
		t.Log("rules stay while networks exist") // networks hold their rules
	}
	for _, n := range []string{"pub", "other", "noicc", "int"} {
		if err := h.RemoveNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if left := firewallResidue(t, lab.hns); len(left) > 0 {
		t.Errorf("sandnet rules left after removing everything:\n%s", strings.Join(left, "\n"))
	}
	if left := hostResidue(t, h); len(left) != 1 || left[0] != "veth up0" {
		t.Errorf("left behind (besides the uplink): %v", left)
	}
	if es := portEntries(t, h); len(es) > 0 {
		t.Errorf("port table not empty: %+v", es)
	}
}

func epB(eps []*Endpoint) netip.Addr {
	for _, ep := range eps {
		if ep.Network == "pub" && len(ep.Ports) == 0 {
			return ep.Addr(false)
		}
	}
	return netip.Addr{}
}

func epNet(t *testing.T, h *Host, name string) *networkRecord {
	t.Helper()
	rec, err := h.readNetwork(name)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func hostVeths(t *testing.T, h *Host) []string {
	var vs []string
	for _, l := range hostResidue(t, h) {
		if strings.HasPrefix(l, "veth ") {
			vs = append(vs, l)
		}
	}
	return vs
}
