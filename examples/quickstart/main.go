// Quickstart: two sandboxes on one bridge network, built step by step inside
// a private lab, so it is safe on any machine. Run as root:
//
//	go run ./examples/quickstart [-keep]
//
// It makes a "lab host" namespace that plays the host (the machine's own
// network is never touched), two sandbox namespaces, and one bridge network;
// it attaches both sandboxes, printing the ip commands that do the same, and
// proves they talk with ping and TCP. Everything is removed at the end, also
// on Ctrl-C; with -keep the attached lab stays for a look with
// `ip netns exec` (the last line lists its namespaces).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	keep := flag.Bool("keep", false, "leave the lab attached, for inspection (delete it with ip netns del)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// Every step below reports the command a person would type for it.
	ctx = explain.With(ctx, func(cmd string) { fmt.Println("    $", cmd) })

	suffix := fmt.Sprintf("%d", os.Getpid())
	names := []string{"qs-host-" + suffix, "qs-a-" + suffix, "qs-b-" + suffix}
	// Cleanup runs however we leave: normal end, error, or Ctrl-C.
	defer func() {
		if *keep {
			fmt.Println("\nlab kept:", strings.Join(names, " "))
			return
		}
		fmt.Println("\n== cleaning up: deleting the lab's namespaces (their veths and bridge go with them)")
		for _, n := range names {
			netns.Delete(context.WithoutCancel(ctx), n)
		}
	}()

	fmt.Println("== 1. namespaces: one plays the host, two are sandboxes (containers without the container)")
	var nss []*netns.NS
	for _, n := range names {
		ns, err := netns.Create(ctx, n)
		if err != nil {
			return err
		}
		defer ns.Close()
		nss = append(nss, ns)
		fmt.Printf("   %s is net:[%d]\n", n, ns.Inode())
	}
	hostNS, a, b := nss[0], nss[1], nss[2]

	stateDir, err := os.MkdirTemp("", "sandnet-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	host, err := sandnet.NewHostNS(hostNS, sandnet.HostConfig{StateDir: stateDir})
	if err != nil {
		return err
	}
	defer host.Close()

	network := sandnet.Network{Name: "quickstart", Subnet: netip.MustParsePrefix("10.77.0.0/24")}
	var eps []*sandnet.Endpoint
	for i, sb := range []*netns.NS{a, b} {
		fmt.Printf("\n== %d. attach %s: bridge (first time), address, veth pair, eth0 inside, default route\n", i+2, sb.Name())
		ep, err := host.AttachNS(ctx, sb, network, sandnet.AttachOptions{})
		if err != nil {
			return err
		}
		eps = append(eps, ep)
		fmt.Printf("   %s: eth0 %s (MAC %s), host side %s on bridge %s, gateway %s\n",
			sb.Name(), ep.Addresses[0], ep.MAC, ep.HostIfName, ep.Bridge, ep.Gateway)
	}

	fmt.Println("\n== 4. proof: a pings b, and a TCP echo from a to b")
	out, err := a.Command(ctx, "ping", "-c", "2", "-W", "1", eps[1].Addr(false).String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping failed: %v\n%s", err, out)
	}
	fmt.Printf("   %s\n", lastLine(string(out)))
	if err := guide.Echo(a, b, netip.AddrPortFrom(eps[1].Addr(false), 8080), "hello over the bridge"); err != nil {
		return fmt.Errorf("tcp failed: %w", err)
	}

	if *keep {
		fmt.Println("\nquickstart: OK, the two sandboxes talked over the bridge (kept attached: -keep)")
		return nil
	}
	fmt.Println("\n== 5. detach both and remove the network")
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

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
