package sandnet

import (
	"context"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

// TestRouteLocalnetOnlyWhereNeeded (issue 16 item 5): route_localnet is on
// a network's bridge only while a port published there answers on
// 127.0.0.1, and goes off with the last one. A network without one keeps
// the host's 127.0.0.1 services out of its sandboxes' reach even with the
// firewall flushed (nft flush ruleset, iptables -F): a sandbox that routes
// 127.0.0.0/8 to its gateway gets no SYN-ACK.
func TestRouteLocalnetOnlyWhereNeeded(t *testing.T) {
	runBackends(t, func(t *testing.T, backend string, newFW func(*netns.NS) nat.Backend) {
		ctx := context.Background()
		lab := newNATLab(t, newFW)
		h := lab.h
		listenTCP(t, lab.hns, "127.0.0.1:18390") // a host service on loopback only
		localnet := func(ep *Endpoint) string {
			v, err := h.ns.ReadSysctl("net/ipv4/conf/" + ep.Bridge + "/route_localnet")
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		plain := Network{Name: "plain", Subnet: mustPrefix("10.97.35.0/24")}
		pub := Network{Name: "pub", Subnet: mustPrefix("10.97.36.0/24")}
		a, b, c := testns.New(t, "ln"), testns.New(t, "ln"), testns.New(t, "ln")
		epA := mustAttach(t, h, a, plain, AttachOptions{Ports: mustPorts(t, "192.0.2.1:18392:80")})
		if v := localnet(epA); v != "0" {
			t.Errorf("route_localnet on a bridge whose only port is on %s: %s", uplinkAddr, v)
		}
		epB := mustAttach(t, h, b, pub, AttachOptions{Ports: mustPorts(t, "127.0.0.1:18391:80")})
		serveWho(t, b, 80)
		epC := mustAttach(t, h, c, pub, AttachOptions{Ports: mustPorts(t, "18393:80")})
		serveWho(t, c, 80)
		if v := localnet(epB); v != "1" {
			t.Errorf("route_localnet with a port on 127.0.0.1: %s", v)
		}
		for _, port := range []int{18391, 18393} {
			if _, err := whoTCP(lab.hns, hp("127.0.0.1", port), 3*time.Second); err != nil {
				t.Errorf("the host to 127.0.0.1:%d: %v", port, err)
			}
		}
		if err := h.Detach(ctx, epB); err != nil {
			t.Fatal(err)
		}
		if v := localnet(epC); v != "1" {
			t.Errorf("route_localnet after one of two ports answering on 127.0.0.1 went: %s", v)
		}
		if err := h.Detach(ctx, epC); err != nil {
			t.Fatal(err)
		}
		if v := localnet(epC); v != "0" {
			t.Errorf("route_localnet after the last port answering on 127.0.0.1 went: %s", v)
		}
		if rep, err := h.Check(ctx, epA); err != nil || !rep.OK() {
			t.Errorf("Check: %v %v", rep.Problems, err)
		}

		// The hostile sandbox: 127.0.0.0/8 routed to its gateway.
		testns.Run(t, a, "ip", "addr", "flush", "dev", "lo")
		for _, key := range []string{"net.ipv4.conf.all.route_localnet", "net.ipv4.conf.eth0.route_localnet"} {
			if _, err := a.Sysctl(key, "1"); err != nil {
				t.Fatal(err)
			}
		}
		testns.Run(t, a, "ip", "route", "add", "127.0.0.0/8", "via", epA.Gateway.String(), "dev", "eth0")
		flushFirewall(t, lab.hns, backend)
		if err := dialEcho(a, "127.0.0.1:18390"); err == nil {
			t.Error("with the firewall flushed, a sandbox reached the host's 127.0.0.1 service")
		}
	})
}

// flushFirewall does what an admin's firewall reload does to sandnet's rules.
func flushFirewall(t *testing.T, ns *netns.NS, backend string) {
	t.Helper()
	if backend == "nftables" {
		testns.Run(t, ns, "nft", "flush", "ruleset")
		return
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat"} {
			testns.Run(t, ns, bin, "-w", "-t", table, "-F")
		}
	}
}
