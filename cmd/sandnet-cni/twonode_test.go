package main

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sandnet/sandnet/internal/testns"
)

// Two nodes on one switch, each running the plugin through libcni in its
// own namespace with its own pod subnet: what a Kubernetes cluster with a
// host-gw network does across machines.

// twoNodes plugs two nodes and an outside machine into one switch
// (192.168.77.0/24: nodes .1 and .2, outside .9).
func twoNodes(t *testing.T) (n1, n2 *node, outside *testns.Segment) {
	t.Helper()
	seg := testns.NewSegment(t, "sw")
	n1, n2 = newNode(t, "n1"), newNode(t, "n2")
	seg.Plug(t, n1.ns, "eth0", netip.MustParsePrefix("192.168.77.1/24"))
	seg.Plug(t, n2.ns, "eth0", netip.MustParsePrefix("192.168.77.2/24"))
	return n1, n2, seg
}

// TestTwoNodesRouted: routed pod subnets with host routes between the
// nodes (host-gw): a pod reaches a pod of the other node by its address and
// is seen there with its own address (the cluster CIDR is never
// masqueraded), while what leaves the cluster is masqueraded to the node.
func TestTwoNodesRouted(t *testing.T) {
	for _, fw := range []string{"nftables", "iptables"} {
		t.Run(fw, func(t *testing.T) {
			if fw == "iptables" {
				testns.NeedProgram(t, "the iptables backend", "iptables")
			}
			twoNodesRouted(t, fw)
		})
	}
}

func twoNodesRouted(t *testing.T, fw string) {
	n1, n2, seg := twoNodes(t)
	outside := seg.Machine(t, "out", netip.MustParsePrefix("192.168.77.9/24"))
	// host-gw: node1's conflist routes node2's pod subnet via node2
	// (nodeRoutes); node2's route is the admin's (ip route add).
	testns.Run(t, n2.ns, "ip", "route", "add", "10.244.1.0/24", "via", "192.168.77.1")
	pods := map[*node]string{}
	lists := map[*node]*libcni.NetworkConfigList{}
	for i, n := range []*node{n1, n2} {
		keys := map[string]any{"subnet": fmt.Sprintf("10.244.%d.0/24", i+1), "routed": true, "clusterCIDR": "10.244.0.0/16", "firewall": fw}
		if n == n1 {
			keys["nodeRoutes"] = []map[string]string{{"dst": "10.244.2.0/24", "via": "192.168.77.2"}}
		}
		l := n.list("pods", "1.0.0", n.conf(keys))
		lists[n] = l
		sb, rt := n.sandbox(fmt.Sprintf("pod%d", i+1))
		n.add(l, rt)
		pods[n] = sb.Path()
		whoami(t, sb, ":8080")
	}
	a, _ := n1.sandboxNS(pods[n1])
	b, _ := n2.sandboxNS(pods[n2])
	if got, err := ask(a, "10.244.2.2:8080"); err != nil || got != "10.244.1.2" {
		t.Errorf("pod1 -> pod2 (other node): seen from %q (%v), want pod1's own 10.244.1.2", got, err)
	}
	if got, err := ask(b, "10.244.1.2:8080"); err != nil || got != "10.244.2.2" {
		t.Errorf("pod2 -> pod1 (other node): seen from %q (%v), want pod2's own 10.244.2.2", got, err)
	}
	// A second pod on node1: its route is there already; a conflicting
	// route to the same subnet is a configuration error.
	_, rt := n1.sandbox("pod1b")
	n1.add(lists[n1], rt)
	bad := n1.list("pods", "1.0.0", n1.conf(map[string]any{"subnet": "10.244.1.0/24", "routed": true, "clusterCIDR": "10.244.0.0/16", "firewall": fw,
		"nodeRoutes": []map[string]string{{"dst": "10.244.2.0/24", "via": "192.168.77.9"}}}))
	_, rt = n1.sandbox("pod1c")
	if _, err := n1.cni.AddNetworkList(context.Background(), bad, rt); codeOf(err) != 7 {
		t.Errorf("ADD with a node route that conflicts: %v, want code 7", err)
	}
	whoami(t, outside, ":8080")
	if got, err := ask(a, "192.168.77.9:8080"); err != nil || got != "192.168.77.1" {
		t.Errorf("pod1 -> outside the cluster: seen from %q (%v), want node1's 192.168.77.1 (masqueraded)", got, err)
	}
}

// TestTwoNodesOverlay: one overlay network over VXLAN between the nodes,
// each handing out addresses from its own part of the subnet.
func TestTwoNodesOverlay(t *testing.T) {
	n1, n2, _ := twoNodes(t)
	var sbs, addrs []string
	for i, n := range []*node{n1, n2} {
		l := n.list("ovl", "1.0.0", n.conf(map[string]any{
			"driver": "overlay", "subnet": "10.245.0.0/24", "ipRange": fmt.Sprintf("10.245.0.%d/25", 128*i),
			"vni": 4242, "underlay": fmt.Sprintf("192.168.77.%d", i+1), "peers": []string{fmt.Sprintf("192.168.77.%d", 2-i)}}))
		sb, rt := n.sandbox(fmt.Sprintf("opod%d", i+1))
		res, err := current.NewResultFromResult(n.add(l, rt))
		if err != nil || len(res.IPs) != 1 {
			t.Fatalf("result %v: %v", res, err)
		}
		sbs = append(sbs, sb.Path())
		addrs = append(addrs, res.IPs[0].Address.IP.String())
		whoami(t, sb, ":8080")
	}
	a, _ := n1.sandboxNS(sbs[0])
	if !netip.MustParsePrefix("10.245.0.128/25").Contains(netip.MustParseAddr(addrs[1])) {
		t.Errorf("node2's pod got %s, outside node2's range", addrs[1])
	}
	if got, err := ask(a, addrs[1]+":8080"); err != nil || got != addrs[0] {
		t.Errorf("opod1 -> opod2 (%s) over VXLAN: seen from %q (%v), want %s", addrs[1], got, err, addrs[0])
	}
}
