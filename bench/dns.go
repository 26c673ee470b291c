package main

// The -dns mode: sandnet's name server, aardvark-dns (Podman's) and dnsmasq
// measured the same way in one run. Each server gets its own lab: a host
// namespace with a bridge and the gateway address the server listens on, a
// client sandbox on the bridge that runs dnsperf as the load, and an
// upstream namespace (a veth away from the host) where a tiny
// authoritative server answers the forwarded names. Nothing leaves the
// lab's namespaces.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/netns"
)

var (
	dnsMode    = flag.Bool("dns", false, "measure the name servers instead: sandnet's, aardvark-dns and dnsmasq, with dnsperf from a sandbox (writes dns.md and dns.csv under -out)")
	dnsServers = flag.String("dns-servers", "sandnet,aardvark,dnsmasq", "-dns: servers to measure")
	dnsLoad    = flag.Duration("dns-time", 0, "-dns: length of each load (default 10s, -quick 3s)")
	dnsRuns    = flag.Int("dns-runs", 0, "-dns: runs of each load, the median run is reported (default 3, -quick 1)")
	dnsNames   = flag.String("dns-names", "", "-dns: numbers of local names, comma-separated (default 10,1000; -quick 10,200)")
)

// The DNS lab's addresses: the bridge network the client and the names are
// on, and the link to the upstream namespace.
var (
	dnsSubnet  = netip.MustParsePrefix("10.78.0.0/16")
	dnsGateway = netip.MustParseAddr("10.78.0.1")
	upHostSide = netip.MustParsePrefix("10.79.0.1/30")
	upAddr     = netip.MustParsePrefix("10.79.0.2/30")
	// fwdDomain is what the upstream answers; every other name is NXDOMAIN there.
	fwdDomain = "fwd.test."
	fwdAnswer = netip.MustParseAddr("10.79.1.1")
	// dnsNetwork is the network every server is measured on.
	dnsNetwork = sandnet.Network{Name: "dnsbench", Subnet: dnsSubnet, Gateway: dnsGateway}
)

// churnEvery is the pause between two name changes under churn: half are
// attaches (a name appears), half detaches (it goes).
const churnEvery = 25 * time.Millisecond

// churnPool is how many sandboxes take turns under churn.
const churnPool = 8

// nameAddr is local name i's address for the peers (sandnet's come from IPAM).
func nameAddr(i int) netip.Addr {
	v := uint32(10)<<24 | uint32(78)<<16 | uint32(1000+i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func localName(i int) string { return fmt.Sprintf("sbx%d", i) }
func churnName(i int) string { return fmt.Sprintf("churn%d", i) }

// nameServer is one server under test, running in its lab.
type nameServer interface {
	// setNames makes local names 0..n-1 known (n only grows).
	setNames(ctx context.Context, n int) error
	// churn adds (on) or removes (off) churn name i, as the tool's runtime
	// does when a container starts or stops.
	churn(ctx context.Context, i int, on bool) error
	// pid is the serving process, for its memory.
	pid() int
	close(ctx context.Context) error
}

type dnsServerKind struct {
	name, label string
	missing     func() string
	start       func(ctx context.Context, l *dnsLab) (nameServer, error)
}

var dnsServerKinds = []dnsServerKind{
	{"sandnet", "sandnet", func() string { return "" }, startSandnetDNS},
	{"aardvark", "aardvark-dns", aardvarkMissing, startAardvark},
	{"dnsmasq", "dnsmasq", dnsmasqMissing, startDnsmasq},
}

// dnsLab is one server's run: the lab host, the client sandbox (sbx[0]),
// the churn sandboxes (sandnet's, sbx[1..]), the named sandboxes (sandnet's,
// after them) and the upstream namespace with its server.
type dnsLab struct {
	*lab
	up    *netns.NS
	upSrv *upstream
}

func (l *dnsLab) client() *netns.NS { return l.sbx[0] }

// named is the sandbox of local name i (sandnet's lab only).
func (l *dnsLab) named(i int) string { return l.path(1 + churnPool + i) }

func newDNSLab(ctx context.Context, scratch, server string, sandboxes int) (*dnsLab, error) {
	base, err := newLab(ctx, scratch, "dns-"+server, sandboxes, false)
	if err != nil {
		return nil, err
	}
	l := &dnsLab{lab: base}
	fail := func(err error) (*dnsLab, error) {
		l.close(context.WithoutCancel(ctx))
		return nil, err
	}
	if l.up, err = netns.Create(ctx, strings.TrimSuffix(base.host.Name(), "-host")+"-up"); err != nil {
		return fail(err)
	}
	hnl, err := l.host.Netlink()
	if err != nil {
		return fail(err)
	}
	unl, err := l.up.Netlink()
	if err != nil {
		return fail(err)
	}
	// host "snbup0" 10.79.0.1/30 <-> upstream "eth0" 10.79.0.2/30
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "snbup0"
	if err := hnl.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(l.up.Fd())}); err != nil {
		return fail(fmt.Errorf("upstream link: %w", err))
	}
	if err := linkAddrUp(hnl, "snbup0", upHostSide); err != nil {
		return fail(err)
	}
	if err := linkAddrUp(unl, "eth0", upAddr); err != nil {
		return fail(err)
	}
	if lo, err := unl.LinkByIndex(1); err == nil {
		unl.LinkSetUp(lo)
	}
	if l.upSrv, err = startUpstream(l.up, netip.AddrPortFrom(upAddr.Addr(), 53)); err != nil {
		return fail(err)
	}
	return l, nil
}

func (l *dnsLab) close(ctx context.Context) error {
	var errs []error
	if l.upSrv != nil {
		l.upSrv.close()
	}
	if l.up != nil {
		name := l.up.Name()
		l.up.Close()
		errs = append(errs, netns.Delete(ctx, name))
	}
	return errors.Join(append(errs, l.lab.close(ctx))...)
}

// peerNetwork gives a peer's lab the network sandnet's server is measured
// on: the same sandnet bridge network (bridge, NAT and isolation rules,
// so the same connection tracking on every query), with the client
// sandbox attached, but with sandnet's own name server off (DNSOff), so
// the peer can listen on the gateway. The servers are then compared on
// identical paths, and a peer does not gain from the firewall sandnet
// puts on every network (as a runtime's does too: netavark's, Docker's).
// It then writes the peer's names file; on failure it closes p.
func (l *dnsLab) peerNetwork(ctx context.Context, p *peerProc) (err error) {
	defer func() {
		if err != nil {
			p.close(context.WithoutCancel(ctx))
		}
	}()
	rc := filepath.Join(l.dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver "+upAddr.Addr().String()+"\n"), 0o644); err != nil {
		return err
	}
	h, err := sandnet.NewHostNS(l.host, sandnet.HostConfig{
		StateDir:     filepath.Join(l.dir, "state"),
		ResolvConf:   rc,
		ResolvedConf: filepath.Join(l.dir, "none"),
		DNS:          sandnet.DNSOff,
	})
	if err != nil {
		return err
	}
	p.h = h
	if p.cl, err = h.Attach(ctx, l.path(0), dnsNetwork, sandnet.AttachOptions{}); err != nil {
		return err
	}
	if err := l.pinNeighbours(p.cl.Addresses[0].Addr()); err != nil {
		return err
	}
	return p.write()
}

// pinNeighbours makes the client's and the gateway's neighbour entries
// permanent: this measures the name server, and with a thousand ports on
// one bridge a broadcast ARP request is easily lost (issue 19), which would
// stall the client for a second now and then.
func (l *dnsLab) pinNeighbours(client netip.Addr) error {
	hnl, err := l.host.Netlink()
	if err != nil {
		return err
	}
	cnl, err := l.client().Netlink()
	if err != nil {
		return err
	}
	gw, err := linkWithAddr(hnl, dnsGateway)
	if err != nil {
		return err
	}
	eth0, err := linkWithAddr(cnl, client)
	if err != nil {
		return err
	}
	for _, n := range []struct {
		nl   *netlink.Handle
		link netlink.Link
		ip   netip.Addr
		mac  net.HardwareAddr
	}{{cnl, eth0, dnsGateway, gw.Attrs().HardwareAddr}, {hnl, gw, client, eth0.Attrs().HardwareAddr}} {
		if err := n.nl.NeighSet(&netlink.Neigh{LinkIndex: n.link.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: n.ip.AsSlice(), HardwareAddr: n.mac}); err != nil {
			return fmt.Errorf("pinning the neighbour entry of %s: %w", n.ip, err)
		}
	}
	return nil
}

// linkWithAddr finds the link that has address a.
func linkWithAddr(nl *netlink.Handle, a netip.Addr) (netlink.Link, error) {
	addrs, err := nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok && ip.Unmap() == a {
			return nl.LinkByIndex(ad.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no link has address %s", a)
}

func linkAddrUp(nl *netlink.Handle, name string, p netip.Prefix) error {
	link, err := nl.LinkByName(name)
	if err != nil {
		return err
	}
	if err := nl.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, name, err)
	}
	return nl.LinkSetUp(link)
}

// ---- sandnet ----

type sandnetDNS struct {
	l       *dnsLab
	h       *sandnet.Host
	net     sandnet.Network
	names   []*sandnet.Endpoint
	churned []*sandnet.Endpoint
	cl      *sandnet.Endpoint
}

func startSandnetDNS(ctx context.Context, l *dnsLab) (nameServer, error) {
	rc := filepath.Join(l.dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver "+upAddr.Addr().String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	h, err := sandnet.NewHostNS(l.host, sandnet.HostConfig{
		StateDir:     filepath.Join(l.dir, "state"),
		ResolvConf:   rc,
		ResolvedConf: filepath.Join(l.dir, "none"),
		DNSUpstreams: []netip.AddrPort{netip.AddrPortFrom(upAddr.Addr(), 53)},
		DNS:          sandnetDNSMode(),
	})
	if err != nil {
		return nil, err
	}
	s := &sandnetDNS{l: l, h: h, net: dnsNetwork, churned: make([]*sandnet.Endpoint, churnPool)}
	// The client is a sandbox of the network like any other: its resolv.conf
	// names the gateway, which starts the name server.
	if s.cl, err = h.Attach(ctx, l.path(0), s.net, sandnet.AttachOptions{}); err != nil {
		s.close(ctx)
		return nil, err
	}
	if err := l.pinNeighbours(s.cl.Addresses[0].Addr()); err != nil {
		s.close(ctx)
		return nil, err
	}
	return s, nil
}

// sandnetDNSMode is how sandnet's server runs: in its helper process, as by
// default, or in this process under -cpuprofile, so the profile has it.
func sandnetDNSMode() sandnet.DNSMode {
	if profileDir != "" {
		return sandnet.DNSInProcess
	}
	return sandnet.DNSHelper
}

func (s *sandnetDNS) pid() int {
	if profileDir != "" {
		return os.Getpid()
	}
	return helperPID(s.h)
}

// helperPID is the PID of the Host's name-server helper process, from the
// state dir's dns/helper.pid (0 when none runs).
func helperPID(h *sandnet.Host) int {
	b, err := os.ReadFile(filepath.Join(h.StateDir(), "dns", "helper.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

func (s *sandnetDNS) setNames(ctx context.Context, n int) error {
	for i := len(s.names); i < n; i++ {
		ep, err := s.h.Attach(ctx, s.l.named(i), s.net, sandnet.AttachOptions{Hostname: localName(i)})
		if err != nil {
			return err
		}
		s.names = append(s.names, ep)
	}
	return nil
}

func (s *sandnetDNS) churn(ctx context.Context, i int, on bool) error {
	if on {
		ep, err := s.h.Attach(ctx, s.l.path(1+i), s.net, sandnet.AttachOptions{Hostname: churnName(i)})
		s.churned[i] = ep
		return err
	}
	if s.churned[i] == nil {
		return nil
	}
	err := s.h.Detach(ctx, s.churned[i])
	s.churned[i] = nil
	return err
}

func (s *sandnetDNS) close(ctx context.Context) error {
	var errs []error
	for _, ep := range append(append(s.names, s.churned...), s.cl) {
		if ep != nil {
			errs = append(errs, s.h.Detach(ctx, ep, sandnet.DetachOptions{SandboxGoing: true}))
		}
	}
	errs = append(errs, s.h.RemoveNetwork(ctx, s.net.Name))
	// The helper stops by itself once no endpoint needs it; wait for it, so
	// the next server's run does not share the CPU with it.
	for deadline := time.Now().Add(5 * time.Second); helperPID(s.h) != 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	return errors.Join(append(errs, s.h.Close())...)
}

// ---- the peers: started in the lab host as their runtime would ----

// peerProc is a peer server process and the names file it serves from.
type peerProc struct {
	l       *dnsLab
	cmd     *exec.Cmd
	pidFile string // aardvark daemonizes: its PID is here
	file    string
	render  func(n int, churn map[int]bool) []byte
	n       int
	on      map[int]bool
	h       *sandnet.Host     // the lab's network (peerNetwork)
	cl      *sandnet.Endpoint // the client sandbox's endpoint on it
}

// readyName is in every peer's names file from the start: once it
// resolves, the server has read its file and handles SIGHUP (before that a
// SIGHUP would kill it).
const readyName = "benchready"

func (p *peerProc) ready(ctx context.Context) error {
	if err := waitAnswer(ctx, p.l, readyName, 10*time.Second); err != nil {
		p.close(ctx)
		return err
	}
	return nil
}

func (p *peerProc) write() error {
	tmp := p.file + ".tmp"
	if err := os.WriteFile(tmp, p.render(p.n, p.on), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.file)
}

// reload writes the names file and tells the server (SIGHUP), as netavark
// does for aardvark-dns and the dnsname CNI plugin did for dnsmasq.
func (p *peerProc) reload() error {
	if err := p.write(); err != nil {
		return err
	}
	if pid := p.pid(); pid > 0 {
		return syscall.Kill(pid, syscall.SIGHUP)
	}
	return errors.New("server not running")
}

func (p *peerProc) setNames(ctx context.Context, n int) error {
	p.n = n
	return p.reload()
}

func (p *peerProc) churn(ctx context.Context, i int, on bool) error {
	p.on[i] = on
	return p.reload()
}

func (p *peerProc) pid() int {
	if p.pidFile != "" {
		b, err := os.ReadFile(p.pidFile)
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	if p.cmd != nil && p.cmd.Process != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

func (p *peerProc) close(ctx context.Context) error {
	pid := p.pid()
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	if p.cmd != nil {
		p.cmd.Wait()
	}
	// A daemonized server is not our child: wait until it is gone.
	for deadline := time.Now().Add(3 * time.Second); pid > 0 && syscall.Kill(pid, 0) == nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if p.h == nil {
		return nil
	}
	var errs []error
	if p.cl != nil {
		errs = append(errs, p.h.Detach(ctx, p.cl, sandnet.DetachOptions{SandboxGoing: true}))
	}
	errs = append(errs, p.h.RemoveNetwork(ctx, dnsNetwork.Name), p.h.Close())
	return errors.Join(errs...)
}

func aardvarkMissing() string {
	for _, p := range []string{"/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns"} {
		if _, err := os.Stat(p); err == nil {
			aardvarkBin = p
			break
		}
	}
	if aardvarkBin == "" {
		return "aardvark-dns not found (Debian: apt-get install aardvark-dns)"
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return "unshare not found (util-linux): needed to give aardvark-dns its own resolv.conf"
	}
	return ""
}

var aardvarkBin string

// startAardvark runs aardvark-dns as netavark does (config dir, one file per
// network, SIGHUP on change), in a private mount namespace whose
// /etc/resolv.conf names the upstream: aardvark-dns 1.4 forwards to the
// servers of /etc/resolv.conf only.
func startAardvark(ctx context.Context, l *dnsLab) (nameServer, error) {
	cfg := filepath.Join(l.dir, "aardvark")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		return nil, err
	}
	rc := filepath.Join(l.dir, "resolv.conf") // peerNetwork writes it
	p := &peerProc{l: l, file: filepath.Join(cfg, "dnsbench"), pidFile: filepath.Join(cfg, "aardvark.pid"), on: map[int]bool{},
		render: func(n int, churn map[int]bool) []byte {
			var b strings.Builder
			b.WriteString(dnsGateway.String() + "\n")
			line := func(id int, a netip.Addr, name string) { fmt.Fprintf(&b, "%064x %s  %s\n", id, a, name) }
			line(200000, nameAddr(65000), readyName)
			for i := range n {
				line(i+1, nameAddr(i), localName(i))
			}
			for i := range churnPool {
				if churn[i] {
					line(100000+i, nameAddr(60000+i), churnName(i))
				}
			}
			return []byte(b.String())
		}}
	if err := l.peerNetwork(ctx, p); err != nil {
		return nil, err
	}
	script := `mount --bind "$1" /etc/resolv.conf && exec "$2" --config "$3" -p 53 run`
	if _, err := runIn(ctx, l.host, nil, nil, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", rc, aardvarkBin, cfg); err != nil {
		p.close(context.WithoutCancel(ctx))
		return nil, err
	}
	if p.pid() == 0 {
		p.close(context.WithoutCancel(ctx))
		return nil, errors.New("aardvark-dns wrote no pid file")
	}
	return p, p.ready(ctx)
}

func dnsmasqMissing() string {
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		return "dnsmasq not found (Debian: apt-get install dnsmasq-base)"
	}
	return ""
}

// startDnsmasq runs dnsmasq on the gateway address with the names in an
// additional hosts file re-read on SIGHUP (the dnsname CNI plugin's way),
// forwarding the rest to the upstream, with no other configuration.
func startDnsmasq(ctx context.Context, l *dnsLab) (nameServer, error) {
	p := &peerProc{l: l, file: filepath.Join(l.dir, "dnsmasq.hosts"), on: map[int]bool{},
		render: func(n int, churn map[int]bool) []byte {
			var b strings.Builder
			fmt.Fprintf(&b, "%s %s\n", nameAddr(65000), readyName)
			for i := range n {
				fmt.Fprintf(&b, "%s %s\n", nameAddr(i), localName(i))
			}
			for i := range churnPool {
				if churn[i] {
					fmt.Fprintf(&b, "%s %s\n", nameAddr(60000+i), churnName(i))
				}
			}
			return []byte(b.String())
		}}
	if err := l.peerNetwork(ctx, p); err != nil {
		return nil, err
	}
	p.cmd = exec.Command("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--addn-hosts="+p.file, "--server="+upAddr.Addr().String(), "--listen-address="+dnsGateway.String(),
		"--bind-interfaces", "--user=root", "--pid-file="+filepath.Join(l.dir, "dnsmasq.pid"), "--log-facility=-")
	if err := l.host.Do(func() error { return p.cmd.Start() }); err != nil {
		p.cmd = nil
		p.close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("starting dnsmasq: %w", err)
	}
	return p, p.ready(ctx)
}
