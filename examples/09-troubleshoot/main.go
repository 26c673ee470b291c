// 09-troubleshoot: the troubleshooting checklist, one fault at a time.
// Run as root:
//
//	go run ./examples/09-troubleshoot [-keep]
//
// When a container "has no network", the guide's checklist walks from the
// inside out: is the interface there and up, does it have its address and a
// default route, is the host end of the veth up on the bridge, does the
// bridge carry the gateway address and answer, does resolv.conf name a
// server that answers, does the host forward, does a firewall rule drop
// the traffic, is the masquerade rule there? diag.Check is that checklist
// as code: each check passes, fails with a one-line reason that says what
// to do, or is skipped because a check it depends on failed (so one fault
// gives one failure, not ten).
//
// The lab: a host namespace and a sandbox "web" on a bridge network
// (10.90.0.0/24) with the embedded name server. The program breaks web's
// network in each of the checklist's ways, one at a time, shows diag.Check
// naming the fault, repairs it and shows the checklist green again.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/diag"
	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/tools"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

func main() { guide.Main("ex09", run) }

var network = sandnet.Network{Name: "ex09", Subnet: netip.MustParsePrefix("10.90.0.0/24")}

// lab is what the faults act on.
type lab struct {
	host   *sandnet.Host
	hostNS *netns.NS
	web    *netns.NS
	ep     *sandnet.Endpoint
	gw     netip.Prefix // the gateway address on the bridge
	resolv string       // web's resolv.conf, as `ip netns exec` shows it
}

// A fault breaks one thing; check is the checklist item that must catch it.
type fault struct {
	what, why string
	check     string
	needs     string // a program breakIt runs, if any
	breakIt   func(ctx context.Context, l *lab) error
	repair    func(ctx context.Context, l *lab) error
}

var defaultRoute = netip.MustParsePrefix("0.0.0.0/0")

var faults = []fault{
	{
		what: "the default route is gone", check: diag.CheckRoute,
		why: "someone ran `ip route flush` inside the container, or a DHCP client replaced the routes",
		breakIt: func(ctx context.Context, l *lab) error {
			return iface.DelRoute(ctx, l.web, iface.Route{Dst: defaultRoute, Via: l.gw.Addr(), Dev: "eth0"})
		},
		repair: func(ctx context.Context, l *lab) error {
			return iface.AddRoute(ctx, l.web, iface.Route{Dst: defaultRoute, Via: l.gw.Addr(), Dev: "eth0"})
		},
	},
	{
		what: "eth0 is down", check: diag.CheckLinkUp,
		why: "an `ip link set eth0 down` inside the container; note that the kernel drops the link's routes and neighbour entries with it",
		breakIt: func(ctx context.Context, l *lab) error {
			return guide.Run(ctx, l.web, "ip", "link", "set", "eth0", "down")
		},
		repair: func(ctx context.Context, l *lab) error {
			if err := iface.Up(ctx, l.web, "eth0"); err != nil {
				return err
			}
			guide.Say("eth0 is up again, but the checklist is not green yet:")
			printFailures(diag.Check(ctx, l.web, l.options()))
			guide.Say("the default route and the gateway's permanent neighbour entry went down with the link and do not come back by themselves:")
			if err := iface.AddRoute(ctx, l.web, iface.Route{Dst: defaultRoute, Via: l.gw.Addr(), Dev: "eth0"}); err != nil {
				return err
			}
			return iface.SetNeighbor(ctx, l.web, "eth0", l.gw.Addr(), bridge.StableMAC(l.ep.Bridge))
		},
	},
	{
		what: "the host end of the veth is down", check: diag.CheckBridgePort,
		why: "an `ip link set vethXXX down` on the host, or a tool that manages \"all\" interfaces",
		breakIt: func(ctx context.Context, l *lab) error {
			return guide.Run(ctx, l.hostNS, "ip", "link", "set", l.ep.HostIfName, "down")
		},
		repair: func(ctx context.Context, l *lab) error { return iface.Up(ctx, l.hostNS, l.ep.HostIfName) },
	},
	{
		what: "the bridge lost the gateway address", check: diag.CheckGatewayIP,
		why: "a network manager on the host flushed the addresses of \"unknown\" interfaces",
		breakIt: func(ctx context.Context, l *lab) error {
			return iface.DelAddr(ctx, l.hostNS, l.ep.Bridge, l.gw)
		},
		repair: func(ctx context.Context, l *lab) error {
			if err := iface.AddAddr(ctx, l.hostNS, l.ep.Bridge, l.gw); err != nil {
				return err
			}
			// With its last IPv4 address the bridge also lost its ARP
			// table, and with it the permanent entries that let it
			// answer for the sandboxes; sandnet's Repair puts them back.
			_, err := l.host.Repair(ctx, l.ep)
			return err
		},
	},
	{
		what: "resolv.conf points at a server that is not there", check: diag.CheckDNSServers,
		why: "a resolv.conf copied from a host whose name server the sandbox cannot reach",
		breakIt: func(ctx context.Context, l *lab) error {
			_, err := dns.WriteFile(ctx, l.resolv, []byte("nameserver 10.90.0.254\n"))
			return err
		},
		repair: func(ctx context.Context, l *lab) error {
			// What Attach wrote: the network's gateway, where its name server answers.
			_, err := dns.WriteFile(ctx, l.resolv, dns.ResolvConf{Nameservers: l.ep.DNS, Search: l.ep.DNSSearch, Options: l.ep.DNSOptions}.Bytes())
			return err
		},
	},
	{
		what: "the host stopped forwarding", check: diag.CheckForwarding,
		why: "a sysctl.conf that sets net.ipv4.ip_forward=0, applied at boot after the container started",
		breakIt: func(ctx context.Context, l *lab) error {
			return guide.Run(ctx, l.hostNS, "sysctl", "-w", "net.ipv4.ip_forward=0")
		},
		repair: func(ctx context.Context, l *lab) error {
			return guide.Run(ctx, l.hostNS, "sysctl", "-w", "net.ipv4.ip_forward=1")
		},
	},
	{
		what: "a firewall rule drops the bridge's traffic", check: diag.CheckFirewall, needs: "iptables",
		why: "a host firewall inserting its own rules at the top of FORWARD",
		breakIt: func(ctx context.Context, l *lab) error {
			return guide.Run(ctx, l.hostNS, "iptables", "-w", "-I", "FORWARD", "-i", l.ep.Bridge, "-j", "DROP")
		},
		repair: func(ctx context.Context, l *lab) error {
			return guide.Run(ctx, l.hostNS, "iptables", "-w", "-D", "FORWARD", "-i", l.ep.Bridge, "-j", "DROP")
		},
	},
	{
		what: "the masquerade rule is gone", check: diag.CheckNATRules, needs: "iptables",
		why: "`iptables -t nat -F` on the host, or a firewall reload that does not know sandnet's rules",
		breakIt: func(ctx context.Context, l *lab) error {
			r, err := l.masquerade()
			if err != nil {
				return err
			}
			return guide.Run(ctx, l.hostNS, "iptables", append([]string{"-w", "-t", r.Table, "-D", r.Chain}, r.Args...)...)
		},
		repair: func(ctx context.Context, l *lab) error {
			r, err := l.masquerade()
			if err != nil {
				return err
			}
			return guide.Run(ctx, l.hostNS, "iptables", append([]string{"-w", "-t", r.Table, "-I", r.Chain, "1"}, r.Args...)...)
		},
	},
}

func run(ctx context.Context, gl *guide.Lab) error {
	guide.Step(1, "a lab host and a sandbox web on a bridge network, with its name server")
	var l lab
	var err error
	if l.hostNS, err = gl.NewNS(ctx, "host"); err != nil {
		return err
	}
	if l.web, err = gl.NewNS(ctx, "web"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sandnet-ex09-")
	if err != nil {
		return err
	}
	gl.Defer(func(context.Context) { os.RemoveAll(dir) })
	resolv := filepath.Join(dir, "host-resolv.conf") // no real resolver takes part (see 05-dns)
	if err := os.WriteFile(resolv, nil, 0o644); err != nil {
		return err
	}
	backend := "iptables"
	if !tools.Installed("iptables") {
		backend = "" // nftables, through netlink
	}
	l.host, err = sandnet.NewHostNS(l.hostNS, sandnet.HostConfig{
		StateDir: filepath.Join(dir, "state"), ResolvConf: resolv, ResolvedConf: resolv, DNS: sandnet.DNSInProcess,
		FirewallBackend: backend, // two faults below are made with the iptables command
	})
	if err != nil {
		return err
	}
	gl.Defer(func(context.Context) { l.host.Close() })
	if l.ep, err = l.host.AttachNS(ctx, l.web, network, sandnet.AttachOptions{SandboxID: "web", Hostname: "web"}); err != nil {
		return err
	}
	l.gw = netip.PrefixFrom(l.ep.Gateway, network.Subnet.Bits())
	l.resolv = diag.ResolvConfPath(l.web)

	guide.Step(2, "the checklist on a healthy sandbox")
	rs := diag.Check(ctx, l.web, l.options())
	for _, r := range rs {
		fmt.Println("     ", r)
	}
	if diag.Failed(rs) {
		return fmt.Errorf("the checklist fails on a healthy sandbox")
	}
	guide.OK("all %d checks pass", len(rs))

	for i, f := range faults {
		guide.Step(3+i, "fault: %s", f.what)
		guide.Say("In real life: %s.", f.why)
		if f.needs != "" && !tools.Installed(f.needs) {
			guide.Say("(%s: this fault is made with it, so it is skipped here)", tools.NotFound(f.needs))
			continue
		}
		if err := f.breakIt(ctx, &l); err != nil {
			return err
		}
		rs := diag.Check(ctx, l.web, l.options())
		printFailures(rs)
		r, _ := diag.Find(rs, f.check)
		if r.Status != diag.Fail {
			return fmt.Errorf("fault %q: check %s = %s (%s), want fail", f.what, f.check, r.Status, r.Reason)
		}
		for _, o := range rs {
			if o.Status == diag.Fail && o.Name != f.check {
				return fmt.Errorf("fault %q: %s failed too: %s", f.what, o.Name, o.Reason)
			}
		}
		guide.OK("diag.Check names the fault: %s", f.check)
		guide.Say("The repair:")
		if err := f.repair(ctx, &l); err != nil {
			return err
		}
		n, err := green(ctx, &l)
		if err != nil {
			return fmt.Errorf("after repairing %q: %w", f.what, err)
		}
		guide.OK("repaired: all %d checks pass again", n)
	}

	if gl.Keep {
		guide.Say("\n-keep: web stays attached (its name server stopped with this program).")
		fmt.Println("\n09-troubleshoot: OK")
		return nil
	}
	guide.Step(3+len(faults), "detach web and remove the network")
	if err := l.host.Detach(ctx, l.ep); err != nil {
		return err
	}
	if err := l.host.RemoveNetwork(ctx, network.Name); err != nil {
		return err
	}
	fmt.Println("\n09-troubleshoot: OK")
	return nil
}

// options are what Check knows: the Host (for the host-side checks), the
// firewall (for nat-rules), a name to resolve, and a short probe timeout.
func (l *lab) options() diag.CheckOptions {
	return diag.CheckOptions{Host: l.host, Rules: diag.HostRules(l.host), ResolveName: "web", Timeout: time.Second}
}

// printFailures prints the failed checks, and those skipped because of
// them, as `sandnet doctor` would.
func printFailures(rs []diag.Result) {
	for _, r := range rs {
		if r.Status == diag.Fail || r.BlockedBy != "" {
			fmt.Println("     ", r)
		}
	}
}

// green runs the checklist until it passes (a port that was down may take
// a moment to forward again), at most a few seconds, and prints failures
// if it does not.
func green(ctx context.Context, l *lab) (int, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		rs := diag.Check(ctx, l.web, l.options())
		if !diag.Failed(rs) {
			return len(rs), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			printFailures(rs)
			return 0, fmt.Errorf("the checklist still fails")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// masquerade is the network's masquerade rule, as sandnet renders it.
func (l *lab) masquerade() (nat.Rule, error) {
	n, err := l.host.Network(network.Name)
	if err != nil {
		return nat.Rule{}, err
	}
	for _, r := range nat.NetworkRules(natNetwork(n)) {
		if strings.HasSuffix(r.Comment, " masquerade") && r.Family == nat.IPv4 {
			return r, nil
		}
	}
	return nat.Rule{}, fmt.Errorf("network %s has no masquerade rule", n.Name)
}

// natNetwork is what the firewall knows of a network.
func natNetwork(n sandnet.Network) nat.Network {
	return nat.Network{Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet, Subnet6: n.Subnet6, Internal: n.Internal, NoICC: n.NoICC}
}
