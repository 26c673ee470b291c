package main

import (
	"context"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sandnet/sandnet/internal/testns"
)

// TestDualStack: a network with subnet6 gives each sandbox an address of
// each family, both in the result with their gateways and default routes,
// and CHECK accepts them.
func TestDualStack(t *testing.T) {
	n := newNode(t, "ds")
	l := n.list("ds", "1.0.0", n.conf(map[string]any{"subnet": "10.81.0.0/24", "subnet6": "fd00:81::/64"}))
	sb, rt := n.sandbox("ds1")
	res, err := current.NewResultFromResult(n.add(l, rt))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range res.IPs {
		got = append(got, ip.Address.String()+" via "+ip.Gateway.String())
	}
	if strings.Join(got, ", ") != "10.81.0.2/24 via 10.81.0.1, fd00:81::2/64 via fd00:81::1" || len(res.Routes) != 2 {
		t.Errorf("ips %v, routes %v", got, res.Routes)
	}
	if out := testns.Run(t, sb, "ip", "-6", "-o", "addr", "show", "eth0"); !strings.Contains(out, "fd00:81::2/64") {
		t.Errorf("eth0: %s", out)
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
}

// TestMacvlan: driver macvlan on the node's uplink; the sandbox is on the
// LAN itself and reaches the other node directly.
func TestMacvlan(t *testing.T) {
	n1, n2, _ := twoNodes(t)
	l := n1.list("lan", "1.0.0", n1.conf(map[string]any{
		"driver": "macvlan", "parent": "eth0", "subnet": "192.168.77.0/24", "ipRange": "192.168.77.128/26"}))
	sb, rt := n1.sandbox("mv1")
	res, err := current.NewResultFromResult(n1.add(l, rt))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "192.168.77.128/24" {
		t.Fatalf("ips %v, want 192.168.77.128/24 from the range", res.IPs)
	}
	whoami(t, n2.ns, ":8080")
	if got, err := ask(sb, "192.168.77.2:8080"); err != nil || got != "192.168.77.128" {
		t.Errorf("macvlan sandbox -> node2: seen from %q (%v)", got, err)
	}
	if err := n1.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Fatal(err)
	}
	if out := testns.Run(t, sb, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("after DEL the sandbox still has eth0: %s", out)
	}
}

// TestSandboxID: CNI container IDs sandnet takes as they are stay so;
// longer ones get a short, stable, distinct form.
func TestSandboxID(t *testing.T) {
	hex64 := strings.Repeat("0123456789abcdef", 4)
	if got := sandboxID(hex64); got != hex64 {
		t.Errorf("a 64-hex-digit ID became %q", got)
	}
	long1, long2 := hex64+"-a", hex64+"-b"
	a, b := sandboxID(long1), sandboxID(long2)
	if a == b || a != sandboxID(long1) || !usableAsIs(a) || !usableAsIs(b) {
		t.Errorf("long IDs: %q and %q", a, b)
	}
}

// TestCNIArgsTolerated: CNI_ARGS with keys sandnet does not know, without
// IgnoreUnknown, and malformed pairs do not fail an ADD; K8S_POD_NAME still
// names the sandbox.
func TestCNIArgsTolerated(t *testing.T) {
	n := newNode(t, "args")
	_, rt := n.sandbox("args1")
	stdin := []byte(`{"cniVersion":"1.0.0","name":"args","type":"sandnet","subnet":"10.82.0.0/24","stateDir":"` + n.state + `","dns":{"enabled":false}}`)
	env := []string{"CNI_CONTAINERID=args1", "CNI_NETNS=" + rt.NetNS, "CNI_IFNAME=eth0",
		"CNI_ARGS=K8S_POD_INFRA_CONTAINER_ID=abc;FOO=bar;junk;K8S_POD_NAME=api-0;K8S_POD_NAMESPACE=prod"}
	if _, err := n.raw("ADD", stdin, env...); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	ep, err := n.host().LookupEndpoint("args", "args1", "eth0")
	if err != nil || ep.Hostname != "api-0" || strings.Join(ep.Aliases, ",") != "api-0.prod" {
		t.Errorf("endpoint %+v, %v: want hostname api-0, alias api-0.prod", ep, err)
	}
	if _, err := n.raw("DEL", stdin, env...); err != nil {
		t.Errorf("DEL: %v", err)
	}
}
