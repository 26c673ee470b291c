// Quickstart: two sandboxes on one bridge network, built step by step inside
// a private lab, so it is safe on any machine. Run as root:
//
//	go run ./examples/quickstart [-keep]
//
// It makes a "lab host" namespace that plays the host (the machine's own
// network is never touched), two sandbox namespaces, and one bridge network;
// it attaches both sandboxes, printing the ip commands that do the same, and
// proves they talk with an ICMP echo and a TCP echo sent from sockets it
// opens inside a sandbox (no ping program needed). Everything is removed at
// the end, also on Ctrl-C, a failed proof or a panic, /etc/netns files
// included; with -keep the attached lab stays for a look with
// `ip netns exec` (the last line lists its namespaces).
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/netns"
)

func main() { guide.Main("qs", run) }

func run(ctx context.Context, lab *guide.Lab) error {
	// guide.Main removes the lab however run ends: normal end, error, panic
	// or Ctrl-C, with the sandboxes' /etc/netns files; -keep leaves it.
	guide.Step(1, "namespaces: one plays the host, two are sandboxes (containers without the container)")
	var nss []*netns.NS
	for _, short := range []string{"host", "a", "b"} {
		ns, err := lab.NewNS(ctx, short)
		if err != nil {
			return err
		}
		nss = append(nss, ns)
		fmt.Printf("   %s is net:[%d]\n", ns.Name(), ns.Inode())
	}
	hostNS, a, b := nss[0], nss[1], nss[2]

	stateDir, err := os.MkdirTemp("", "sandnet-quickstart-")
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { os.RemoveAll(stateDir) })
	host, err := sandnet.NewHostNS(hostNS, sandnet.HostConfig{StateDir: stateDir})
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { host.Close() })

	network := sandnet.Network{Name: "quickstart", Subnet: netip.MustParsePrefix("10.77.0.0/24")}
	var eps []*sandnet.Endpoint
	for i, sb := range []*netns.NS{a, b} {
		guide.Step(i+2, "attach %s: bridge (first time), address, veth pair, eth0 inside, default route", sb.Name())
		ep, err := host.AttachNS(ctx, sb, network, sandnet.AttachOptions{})
		if err != nil {
			return err
		}
		eps = append(eps, ep)
		fmt.Printf("   %s: eth0 %s (MAC %s), host side %s on bridge %s, gateway %s\n",
			sb.Name(), ep.Addresses[0], ep.MAC, ep.HostIfName, ep.Bridge, ep.Gateway)
	}

	guide.Step(4, "proof: a pings b, and a TCP echo from a to b")
	guide.Say("Both from sockets this program opens inside a: an ICMP echo and a TCP connection.")
	if err := guide.Reach(ctx, a, eps[1].Addr(false)); err != nil {
		return err
	}
	if err := guide.Echo(a, b, netip.AddrPortFrom(eps[1].Addr(false), 8080), "hello over the bridge"); err != nil {
		return fmt.Errorf("tcp failed: %w", err)
	}
	guide.OK("a and b talk over the bridge")

	if lab.Keep {
		fmt.Println("\nquickstart: OK, the two sandboxes talked over the bridge (kept attached: -keep)")
		return nil
	}
	guide.Step(5, "detach both and remove the network")
	for _, ep := range eps {
		if err := host.Detach(ctx, ep); err != nil {
			return err
		}
	}
	if err := host.RemoveNetwork(ctx, network.Name); err != nil {
		return err
	}
	fmt.Println("\nquickstart: OK, the two sandboxes talked over the bridge")
	return nil
}
