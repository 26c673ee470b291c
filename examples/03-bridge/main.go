// 03-bridge: a virtual switch in the host, with two sandboxes plugged in.
// Run as root:
//
//	go run ./examples/03-bridge [-keep]
//
// This is Docker's default network. A bridge is a software Ethernet switch
// living in the host namespace (docker0). Each container gets a veth pair:
// eth0 inside the container, the other end plugged into the bridge as a
// port. The bridge also carries an address, the gateway of the subnet. Here a
// private "lab host" namespace plays the host, so the machine's own network
// is never touched.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/ipam"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

func main() { guide.Main("ex03", run) }

func run(ctx context.Context, lab *guide.Lab) error {
	guide.Step(1, "a lab host namespace and two sandboxes, a and b")
	host, err := lab.NewNS(ctx, "host")
	if err != nil {
		return err
	}
	a, err := lab.NewNS(ctx, "a")
	if err != nil {
		return err
	}
	b, err := lab.NewNS(ctx, "b")
	if err != nil {
		return err
	}

	subnet := netip.MustParsePrefix("10.30.0.0/24")
	gateway := netip.PrefixFrom(netip.MustParseAddr("10.30.0.1"), subnet.Bits())
	guide.Step(2, "the bridge br0 in the host, with the gateway address %s", gateway)
	guide.Say("The bridge gets a fixed MAC (it would otherwise take the lowest MAC of its\n" +
		"ports and change as sandboxes come and go) and the subnet's first address.")
	if _, _, err := bridge.Ensure(ctx, host, bridge.Config{Name: "br0", Addrs: []netip.Prefix{gateway}}); err != nil {
		return err
	}
	if _, err := guide.Look(ctx, host, "ip", "addr", "show", "br0"); err != nil {
		return err
	}

	// IPAM hands out the sandboxes' addresses, as Docker's does: in order,
	// skipping the network address and the gateway. Leases live in files.
	dir, err := os.MkdirTemp("", "sandnet-ex03-")
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { os.RemoveAll(dir) })
	store, err := ipam.Open(dir)
	if err != nil {
		return err
	}
	pools := []ipam.Pool{{Subnet: subnet, Gateway: gateway.Addr()}}

	addrs := map[string]netip.Addr{}
	for i, s := range []struct {
		short string
		ns    *netns.NS
	}{{"a", a}, {"b", b}} {
		port := "veth-" + s.short
		guide.Step(3+i, "plug sandbox %s in: veth pair (%s on the bridge, eth0 inside), address, up", s.short, port)
		lease, err := store.Allocate(ctx, pools, ipam.Key{Network: "ex03", Sandbox: s.short, Interface: "eth0"})
		if err != nil {
			return err
		}
		addr := lease.Addrs[0]
		guide.Say("IPAM gave %s the address %s", s.short, addr)
		if _, err := veth.Create(ctx, host, veth.Pair{Name: port, PeerName: "eth0", PeerNS: s.ns}); err != nil {
			return err
		}
		// Enslaving the host end to the bridge is what plugs the cable in.
		if err := bridge.AddPort(ctx, host, "br0", port); err != nil {
			return err
		}
		if err := iface.AddAddr(ctx, s.ns, "eth0", addr); err != nil {
			return err
		}
		if err := iface.Up(ctx, s.ns, "eth0"); err != nil {
			return err
		}
		addrs[s.short] = addr.Addr()
	}
	ports, err := bridge.Ports(host, "br0")
	if err != nil {
		return err
	}
	if _, err := guide.Look(ctx, host, "ip", "-br", "link", "show", "master", "br0"); err != nil {
		return err
	}
	if len(ports) != 2 {
		return fmt.Errorf("br0 has ports %v, want veth-a and veth-b", ports)
	}
	guide.OK("br0 has two ports: %s", strings.Join(ports, ", "))

	guide.Step(5, "proof: a pings b through the bridge, and the gateway")
	for _, dst := range []netip.Addr{addrs["b"], gateway.Addr()} {
		if err := guide.Reach(ctx, a, dst); err != nil {
			return err
		}
	}
	guide.OK("a reaches b (%s) and the gateway (%s)", addrs["b"], gateway.Addr())

	guide.Step(6, "what the switch learned: its forwarding database")
	guide.Say("Like a hardware switch, the bridge learns which MAC is behind which port\n" +
		"from the frames it sees, so it forwards instead of flooding.")
	fdb, err := guide.Look(ctx, host, "bridge", "fdb", "show", "br", "br0")
	if err != nil {
		return err
	}
	for _, s := range []struct {
		short string
		ns    *netns.NS
	}{{"a", a}, {"b", b}} {
		nl, err := s.ns.Netlink()
		if err != nil {
			return err
		}
		eth0, err := nl.LinkByName("eth0")
		if err != nil {
			return err
		}
		mac := eth0.Attrs().HardwareAddr.String()
		if !strings.Contains(fdb, mac+" dev veth-"+s.short) {
			return fmt.Errorf("the bridge has not learned %s's MAC %s on veth-%s", s.short, mac, s.short)
		}
		guide.OK("%s's eth0 (%s) is known to be behind port veth-%s", s.short, mac, s.short)
	}
	fmt.Println("\n03-bridge: OK")
	return nil
}
