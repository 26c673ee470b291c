// Overlay: one network across two hosts, with VXLAN. Run as root:
//
//	go run ./examples/overlay
//
// It builds a lab out of namespaces (the machine's own network is never
// touched): a "switch" (a bridge) and two "hosts" plugged into it by veth
// cables, the physical network or "underlay", 192.168.60.0/24. Each host runs
// its own sandnet Host with its own state, and puts one sandbox on the
// overlay network 10.42.0.0/24: a bridge and a VXLAN device (VNI 42, UDP
// 4789) per host, and a veth from the sandbox to the bridge. The two
// sandboxes then share one Ethernet segment although they sit on different
// hosts: ping, TCP, and an 8 MB transfer prove it, and the MTU (1500 - 50)
// keeps full-size packets whole. Last, the peer list is changed at run time,
// as a control plane would. Every step prints the command that does the
// same; everything is removed at the end, also on Ctrl-C.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/probe"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/overlay"
	"github.com/sandnet/sandnet/veth"
)

func main() { guide.Main("ov", run) }

var underlay = []netip.Addr{netip.MustParseAddr("192.168.60.11"), netip.MustParseAddr("192.168.60.12")}

func run(ctx context.Context, lab *guide.Lab) error {
	// guide.Main removes the lab however run ends (error, panic, Ctrl-C),
	// /etc/netns files included. This lab is not kept: -keep is ignored.
	lab.Keep = false
	roles := []string{"switch", "host1", "host2", "a", "b"}
	guide.Step(1, "the lab: a switch, two hosts and a sandbox on each, each a namespace")
	ns := map[string]*netns.NS{}
	for _, r := range roles {
		n, err := lab.NewNS(ctx, r)
		if err != nil {
			return err
		}
		ns[r] = n
	}

	guide.Step(2, "the underlay 192.168.60.0/24: a bridge plays the switch, veth pairs play the cables")
	sw, _, err := bridge.Ensure(ctx, ns["switch"], bridge.Config{Name: "sw"})
	if err != nil {
		return err
	}
	for i, h := range []string{"host1", "host2"} {
		port := fmt.Sprintf("port%d", i+1)
		if _, err := veth.Create(ctx, ns["switch"], veth.Pair{Name: port, PeerName: "eth0", PeerNS: ns[h], Master: sw.Index, MasterName: "sw", Up: true}); err != nil {
			return err
		}
		if err := sh(ctx, ns[h], "ip", "addr", "add", underlay[i].String()+"/24", "dev", "eth0"); err != nil {
			return err
		}
		if err := sh(ctx, ns[h], "ip", "link", "set", "eth0", "up"); err != nil {
			return err
		}
	}

	// Each host has its own sandnet Host (own namespace, own state dir),
	// as two machines would.
	var hosts []*sandnet.Host
	for _, h := range []string{"host1", "host2"} {
		dir, err := os.MkdirTemp("", "sandnet-overlay-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		host, err := sandnet.NewHostNS(ns[h], sandnet.HostConfig{StateDir: dir})
		if err != nil {
			return err
		}
		defer host.Close()
		hosts = append(hosts, host)
	}

	// The same network on both hosts: same VNI and subnet; each host its own
	// underlay address, its own slice of the subnet, the other as its peer.
	def := func(i int) sandnet.Network {
		return sandnet.Network{
			Name: "ov", Driver: sandnet.DriverOverlay, VNI: 42,
			Subnet:   netip.MustParsePrefix("10.42.0.0/24"),
			IPRange:  netip.MustParsePrefix(fmt.Sprintf("10.42.0.%d/26", 64*(i+1))),
			Underlay: underlay[i],
			Peers:    []netip.Addr{underlay[1-i]},
		}
	}
	var eps []*sandnet.Endpoint
	for i, sb := range []string{"a", "b"} {
		fmt.Printf("\n== %d. host%d attaches sandbox %s: bridge and VXLAN device (first time), flooding to its peer, veth to the bridge\n", i+3, i+1, sb)
		ep, err := hosts[i].AttachNS(ctx, ns[sb], def(i), sandnet.AttachOptions{})
		if err != nil {
			return err
		}
		eps = append(eps, ep)
		fmt.Printf("   %s on host%d: eth0 %s (MAC %s), mtu %d = underlay 1500 - VXLAN's %d\n", sb, i+1, ep.Addresses[0], ep.MAC, ep.MTU, overlay.Overhead)
	}
	a, b := ns["a"], ns["b"]
	bAddr := eps[1].Addr(false)

	guide.Step(5, "proof: a (host1) pings b (host2), a full-size packet crosses whole, TCP echo and 8 MB")
	if err := guide.Ping(ctx, a, bAddr.String(), true); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := probe.PingDF(pctx, a, bAddr, 1422); err != nil {
		return fmt.Errorf("a 1450-byte packet did not cross: %w", err)
	}
	fmt.Println("   ICMP echo with 1422 bytes of data, don't-fragment set (ping -M do -s 1422), a 1450-byte packet: answered")
	if err := guide.Echo(a, b, netip.AddrPortFrom(bAddr, 8080), "hello across the overlay"); err != nil {
		return err
	}
	if err := transfer(a, b, netip.AddrPortFrom(bAddr, 9000), 8<<20); err != nil {
		return err
	}

	dev := "" // the VXLAN device: the only vxlan link on host1
	if nl, err := ns["host1"].Netlink(); err == nil {
		links, _ := nl.LinkList()
		for _, l := range links {
			if l.Type() == "vxlan" {
				dev = l.Attrs().Name
			}
		}
	}
	fmt.Printf("\n== 6. host1's forwarding database on %s: the flooding entry, and b's MAC learnt from its packets\n", dev)
	printFDB(ns["host1"], dev)

	// Peers are removed on both sides, as a control plane does when a host
	// leaves: with learning on, a host that still sends would be learnt again.
	guide.Step(7, "a control plane takes host2 out of the overlay: each host drops the other from its peers")
	for i := range hosts {
		if err := hosts[i].RemovePeer(ctx, "ov", underlay[1-i]); err != nil {
			return err
		}
	}
	guide.Say("Once more on both: until host2 had dropped host1 too, a packet still on its\n" +
		"way from host2 could teach host1 b's MAC again (the VXLAN device learns from\n" +
		"what arrives); this pass removes what came back, if anything did.")
	for i := range hosts {
		if err := hosts[i].RemovePeer(ctx, "ov", underlay[1-i]); err != nil {
			return err
		}
	}
	if err := guide.Ping(ctx, a, bAddr.String(), false); err != nil {
		return err
	}
	guide.Step(8, "... and brings it back: reachable again")
	for i := range hosts {
		if err := hosts[i].AddPeer(ctx, "ov", underlay[1-i]); err != nil {
			return err
		}
	}
	if err := guide.Ping(ctx, a, bAddr.String(), true); err != nil {
		return err
	}

	guide.Step(9, "detach and remove the network on each host: veth, VXLAN device (with its FDB) and bridge go")
	for i, ep := range eps {
		if err := hosts[i].Detach(ctx, ep); err != nil {
			return err
		}
		if err := hosts[i].RemoveNetwork(ctx, "ov"); err != nil {
			return err
		}
	}
	fmt.Println("\noverlay: OK, two sandboxes on two hosts shared one segment")
	return nil
}

// sh runs a command inside ns, printing it first.
func sh(ctx context.Context, ns *netns.NS, args ...string) error {
	explain.Say(ctx, "%s", ns.Shell(strings.Join(args, " ")))
	if out, err := ns.Command(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func printFDB(ns *netns.NS, dev string) {
	entries, err := overlay.FDB(ns, dev)
	if err != nil {
		fmt.Println("   ", err)
		return
	}
	for _, e := range entries {
		kind := "learnt"
		if e.Permanent {
			kind = "set by sandnet"
		}
		fmt.Printf("     %s dst %s (%s)\n", e.MAC, e.Dst, kind)
	}
}

// transfer sends size random bytes from client to server over TCP and
// checks they all arrive.
func transfer(client, server *netns.NS, addr netip.AddrPort, size int) error {
	var ln net.Listener
	if err := server.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		return err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	var c net.Conn
	if err := client.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr.String(), 3*time.Second); return err }); err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	start := time.Now()
	_, err := c.Write(data)
	c.Close()
	n := <-got
	if err != nil || n != int64(size) {
		return fmt.Errorf("transfer: sent %d bytes, received %d: %v", size, n, err)
	}
	fmt.Printf("   TCP %d MB %s -> %s: all received in %v\n", size>>20, client.Name(), addr, time.Since(start).Round(time.Millisecond))
	return nil
}
