package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/testns"
)

// TestVersions: each spec version sandnet speaks gets its result in that
// version (Podman 4.3 rejects a newer one); CHECK works from 0.4.0 on, GC
// and STATUS from 1.1.0; VERSION lists the three.
func TestVersions(t *testing.T) {
	n := newNode(t, "ver")
	info, err := n.cni.GetVersionInfo(context.Background(), "sandnet")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(info.SupportedVersions(), ","); got != "0.4.0,1.0.0,1.1.0" {
		t.Errorf("VERSION lists %s", got)
	}
	for i, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		l := n.list("ver", v, n.conf(map[string]any{"subnet": "10.71.0.0/24"}))
		_, rt := n.sandbox(fmt.Sprintf("ver%d", i))
		res := n.add(l, rt)
		if res.Version() != v {
			t.Errorf("asked %s, got a %s result", v, res.Version())
		}
		raw, err := n.cni.GetNetworkListCachedResult(l, rt)
		if err != nil || raw == nil {
			t.Fatalf("cached result: %v", err)
		}
		if err := n.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
			t.Errorf("CHECK in %s: %v", v, err)
		}
		if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
			t.Errorf("DEL in %s: %v", v, err)
		}
	}
	_, err = n.raw("ADD", []byte(`{"cniVersion":"0.3.1","name":"ver","type":"sandnet"}`), "CNI_CONTAINERID=x", "CNI_NETNS=/proc/1/ns/net", "CNI_IFNAME=eth0")
	if codeOf(err) != 1 {
		t.Errorf("ADD in 0.3.1: %v, want code 1", err)
	}
}

// TestAddCheckDel: ADD with the capabilities a runtime passes, what the
// kernel then holds, a published port reached from the node and from a
// second sandbox, CHECK, a CHECK that finds what broke, and DEL in every
// form a runtime sends it.
func TestAddCheckDel(t *testing.T) {
	n := newNode(t, "acd")
	conf := n.conf(map[string]any{"subnet": "10.72.0.0/24",
		"capabilities": map[string]bool{"portMappings": true, "ips": true, "mac": true, "aliases": true, "dns": true}})
	l := n.list("acd", "1.0.0", conf)
	sb, rt := n.sandbox("web1")
	rt.CapabilityArgs = map[string]any{
		"portMappings": []map[string]any{{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}},
		"ips":          []string{"10.72.0.50/24"},
		"mac":          "02:00:00:00:aa:01",
		"aliases":      map[string][]string{"acd": {"www"}},
		"dns":          map[string]any{"servers": []string{"192.0.2.53"}, "searches": []string{"example.test"}},
	}
	r := n.add(l, rt)
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces) != 3 || res.Interfaces[2].Sandbox != sb.Path() || res.Interfaces[2].Mac != "02:00:00:00:aa:01" {
		t.Errorf("interfaces %+v: want bridge, host veth, eth0 in %s with the MAC asked", res.Interfaces, sb.Path())
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.72.0.50/24" || res.IPs[0].Gateway.String() != "10.72.0.1" || *res.IPs[0].Interface != 2 {
		t.Errorf("ips %+v: want 10.72.0.50/24 via 10.72.0.1 on interface 2", res.IPs)
	}
	if len(res.Routes) != 1 || res.Routes[0].GW.String() != "10.72.0.1" {
		t.Errorf("routes %+v: want the default via the gateway", res.Routes)
	}
	if !strings.Contains(strings.Join(res.DNS.Nameservers, " "), "192.0.2.53") || !strings.Contains(strings.Join(res.DNS.Search, " "), "example.test") {
		t.Errorf("dns %+v: want the runtime's server and search domain", res.DNS)
	}
	out := testns.Run(t, sb, "ip", "-o", "addr", "show", "eth0")
	if !strings.Contains(out, "10.72.0.50/24") {
		t.Errorf("eth0 in the sandbox: %s", out)
	}
	// The CLI and library see the attachment in the shared state dir.
	h := n.host()
	ep, err := h.LookupEndpoint("acd", "web1", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Hostname != "web1" || !strings.Contains(strings.Join(ep.Aliases, " "), "www") || !strings.Contains(strings.Join(ep.Aliases, " "), "web1.default") {
		t.Errorf("DNS names %q %q: want the pod name, pod.namespace and the runtime's alias", ep.Hostname, ep.Aliases)
	}

	whoami(t, sb, ":80")
	if _, err := ask(n.ns, "10.72.0.1:18080"); err != nil {
		t.Errorf("published port from the node: %v", err)
	}
	sb2, rt2 := n.sandbox("client")
	n.add(l, rt2)
	if _, err := ask(sb2, "10.72.0.1:18080"); err != nil {
		t.Errorf("published port from a second sandbox: %v", err)
	}

	if err := n.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("CHECK of a whole endpoint: %v", err)
	}
	testns.Run(t, sb, "ip", "addr", "del", "10.72.0.50/24", "dev", "eth0")
	err = n.cni.CheckNetworkList(context.Background(), l, rt)
	if err == nil || !strings.Contains(err.Error(), "10.72.0.50/24") {
		t.Errorf("CHECK after the address was removed: %v, want an error naming it", err)
	}

	// ADD again: the interface exists.
	if _, err := n.cni.AddNetworkList(context.Background(), l, rt); err == nil {
		t.Error("a second ADD of the same container and interface succeeded")
	}

	before := n.veths()
	if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if got := n.veths(); got != before-1 {
		t.Errorf("veths %d after DEL, want %d", got, before-1)
	}
	if _, err := h.LookupEndpoint("acd", "web1", "eth0"); !errors.Is(err, sandnet.ErrNotFound) {
		t.Errorf("record after DEL: %v", err)
	}
	if _, err := ask(n.ns, "10.72.0.1:18080"); err == nil {
		t.Error("the published port still answers after DEL")
	}
	// DEL again, DEL with an empty netns (containerd), DEL of a container
	// never added, DEL without prevResult: all succeed.
	for _, x := range []*libcni.RuntimeConf{rt, {ContainerID: "web1", IfName: "eth0"}, {ContainerID: "never", NetNS: "/run/netns/gone", IfName: "eth0"}} {
		if err := n.cni.DelNetworkList(context.Background(), l, x); err != nil {
			t.Errorf("DEL %+v: %v", x, err)
		}
	}
	stdin, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "acd", "type": "sandnet", "stateDir": n.state})
	if _, err := n.raw("DEL", stdin, "CNI_CONTAINERID=client", "CNI_IFNAME=eth0", "CNI_NETNS="); err != nil {
		t.Errorf("raw DEL with an empty CNI_NETNS and no prevResult: %v", err)
	}
	if got := n.leases("acd"); got != 0 {
		t.Errorf("%d leases left after DEL of every sandbox", got)
	}
}

// TestErrors: the spec's codes, each with a message naming the step.
func TestErrors(t *testing.T) {
	n := newNode(t, "err")
	_, rt := n.sandbox("e1")
	env := []string{"CNI_CONTAINERID=e1", "CNI_NETNS=" + rt.NetNS, "CNI_IFNAME=eth0"}
	conf := func(keys string) []byte {
		return []byte(`{"cniVersion":"1.0.0","name":"err","type":"sandnet","stateDir":"` + n.state + `","dns":{"enabled":false}` + keys + `}`)
	}
	for _, c := range []struct {
		what  string
		stdin []byte
		env   []string
		code  int
	}{
		{"bad JSON", []byte(`{"cniVersion":"1.0.0",`), env, 6},
		{"bad key type", conf(`,"subnet":12`), env, 6},
		{"host bits in the subnet", conf(`,"subnet":"10.73.0.1/24"`), env, 7},
		{"unknown driver", conf(`,"driver":"ipvlan"`), env, 7},
		{"no container ID", conf(`,"subnet":"10.73.0.0/24"`), env[1:], 4},
		{"unsupported version", []byte(`{"cniVersion":"0.2.0","name":"err","type":"sandnet"}`), env, 1},
		{"state dir not usable", []byte(`{"cniVersion":"1.0.0","name":"err","type":"sandnet","stateDir":"/proc/version"}`), env, 50},
	} {
		_, err := n.raw("ADD", c.stdin, c.env...)
		if codeOf(err) != c.code {
			t.Errorf("%s: %v, want code %d", c.what, err, c.code)
		}
	}
	// A host port held by another sandbox: try again later.
	l := n.list("err", "1.0.0", n.conf(map[string]any{"subnet": "10.73.0.0/24", "capabilities": map[string]bool{"portMappings": true}}))
	pm := map[string]any{"portMappings": []map[string]any{{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}}}
	_, a := n.sandbox("holder")
	a.CapabilityArgs = pm
	n.add(l, a)
	rt.CapabilityArgs = pm
	_, err := n.cni.AddNetworkList(context.Background(), l, rt)
	if codeOf(err) != 11 || !strings.Contains(err.Error(), "publishing ports") {
		t.Errorf("ADD with a held host port: %v, want code 11 naming the step", err)
	}
	if n.leases("err") != 1 {
		t.Errorf("the failed ADD left %d leases, want only the holder's", n.leases("err"))
	}
}

// TestGC: GC frees every attachment the runtime does not list as valid,
// under the current key and the older one, and nothing without a key.
func TestGC(t *testing.T) {
	n := newNode(t, "gc")
	l := n.list("gc", "1.1.0", n.conf(map[string]any{"subnet": "10.74.0.0/24"}))
	var rts []*libcni.RuntimeConf
	for i := range 4 {
		_, rt := n.sandbox(fmt.Sprintf("g%d", i))
		n.add(l, rt)
		rts = append(rts, rt)
	}
	stdin := func(extra string) []byte {
		return []byte(`{"cniVersion":"1.1.0","name":"gc","type":"sandnet","stateDir":"` + n.state + `"` + extra + `}`)
	}
	if _, err := n.raw("GC", stdin("")); err != nil {
		t.Fatalf("GC without a key: %v", err)
	}
	if got := n.leases("gc"); got != 4 {
		t.Fatalf("GC without valid-attachments left %d of 4 leases", got)
	}
	// libcni's GC: g0 and g1 stay.
	valid := []types.GCAttachment{{ContainerID: "g0", IfName: "eth0"}, {ContainerID: "g1", IfName: "eth0"}}
	if err := n.cni.GCNetworkList(context.Background(), l, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	h := n.host()
	eps, _ := h.Endpoints("gc")
	if len(eps) != 2 || eps[0].SandboxID != "g0" || eps[1].SandboxID != "g1" || n.leases("gc") != 2 || n.veths() != 2 {
		t.Errorf("after GC keeping g0, g1: endpoints %v, %d leases, %d veths", eps, n.leases("gc"), n.veths())
	}
	// The older key alone: g0 stays.
	if _, err := n.raw("GC", stdin(`,"cni.dev/attachments":[{"containerID":"g0","ifname":"eth0"}]`)); err != nil {
		t.Fatalf("GC with cni.dev/attachments: %v", err)
	}
	if eps, _ := h.Endpoints("gc"); len(eps) != 1 || eps[0].SandboxID != "g0" {
		t.Errorf("after GC with the older key keeping g0: %v", eps)
	}
	// The runtime's DEL of a collected container still succeeds.
	if err := n.cni.DelNetworkList(context.Background(), l, rts[3]); err != nil {
		t.Errorf("DEL after GC: %v", err)
	}
}

// TestStatus: ready with a usable state dir and firewall; code 50 not.
func TestStatus(t *testing.T) {
	n := newNode(t, "st")
	l := n.list("st", "1.1.0", n.conf(map[string]any{"subnet": "10.75.0.0/24"}))
	if err := n.cni.GetStatusNetworkList(context.Background(), l); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	bad := n.list("st", "1.1.0", n.conf(map[string]any{"stateDir": "/proc/version"}))
	if err := n.cni.GetStatusNetworkList(context.Background(), bad); codeOf(err) != 50 {
		t.Errorf("STATUS with an unusable state dir: %v, want code 50", err)
	}
}

// TestConcurrentAndCycles: 6 ADD/DEL at once, then 20 ADD/DEL cycles in a
// /28 (13 addresses): nothing leaks, so the pool never runs dry.
func TestConcurrentAndCycles(t *testing.T) {
	n := newNode(t, "cc")
	l := n.list("cc", "1.0.0", n.conf(map[string]any{"subnet": "10.76.0.0/28"}))
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range 6 {
		_, rt := n.sandbox(fmt.Sprintf("c%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.cni.AddNetworkList(context.Background(), l, rt); err != nil {
				errs[i] = err
				return
			}
			errs[i] = n.cni.DelNetworkList(context.Background(), l, rt)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent ADD/DEL: %v", err)
	}
	_, rt := n.sandbox("cycle")
	for i := range 20 {
		if _, err := n.cni.AddNetworkList(context.Background(), l, rt); err != nil {
			t.Fatalf("cycle %d: ADD: %v", i, err)
		}
		if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
			t.Fatalf("cycle %d: DEL: %v", i, err)
		}
	}
	if n.leases("cc") != 0 || n.veths() != 0 {
		t.Errorf("after the cycles: %d leases, %d veths", n.leases("cc"), n.veths())
	}
}

// TestDelegatedIPAM: with an ipam section, host-local hands out the
// address (its lease file says so), sandnet uses it, and DEL and GC reach
// host-local too.
func TestDelegatedIPAM(t *testing.T) {
	needPlugins(t, "host-local")
	n := newNode(t, "ipam")
	data := t.TempDir()
	l := n.list("ipam", "1.1.0", n.conf(map[string]any{"ipam": map[string]any{
		"type": "host-local", "dataDir": data,
		"ranges": [][]map[string]string{{{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.100", "gateway": "10.77.0.1"}}},
	}}))
	sb, rt := n.sandbox("ip1")
	res, err := current.NewResultFromResult(n.add(l, rt))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.77.0.100/24" {
		t.Fatalf("ips %+v: want host-local's first, 10.77.0.100/24", res.IPs)
	}
	if _, err := os.Stat(filepath.Join(data, "ipam", "10.77.0.100")); err != nil {
		t.Errorf("host-local's lease: %v", err)
	}
	if out := testns.Run(t, sb, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, "10.77.0.100/24") {
		t.Errorf("eth0: %s", out)
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	_, rt2 := n.sandbox("ip2")
	n.add(l, rt2)
	if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "ipam", "10.77.0.100")); !os.IsNotExist(err) {
		t.Errorf("host-local's lease after DEL: %v", err)
	}
	if err := n.cni.GCNetworkList(context.Background(), l, &libcni.GCArgs{}); err != nil {
		t.Fatal(err)
	}
	// sandnet's side is gone; host-local gets the GC only if it speaks
	// 1.1.0 (Debian 12's does not, and keeps its lease).
	if n.veths() != 0 || n.leases("ipam") != 0 {
		t.Errorf("after GC with nothing valid: %d veths, %d sandnet leases", n.veths(), n.leases("ipam"))
	}
}

// TestChainedPortmap: sandnet first, the reference portmap plugin after it
// (publishing from the result sandnet passed on), as a conflist written
// for the bridge plugin would chain it.
func TestChainedPortmap(t *testing.T) {
	needPlugins(t, "portmap")
	testns.NeedProgram(t, "the portmap plugin execs it", "iptables")
	n := newNode(t, "pm")
	l := n.list("pm", "1.0.0",
		n.conf(map[string]any{"subnet": "10.78.0.0/24", "firewall": "iptables"}),
		map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	sb, rt := n.sandbox("pm1")
	rt.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 18082, "containerPort": 80, "protocol": "tcp"}}}
	n.add(l, rt)
	whoami(t, sb, ":80")
	if _, err := ask(n.ns, "10.78.0.1:18082"); err != nil {
		t.Errorf("port published by the chained portmap: %v", err)
	}
	// No CHECK through the chain: portmap 1.1.1 (Debian 12) fails CHECK
	// on an IPv4-only sandbox (containernetworking/plugins#819).
	if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Fatal(err)
	}
	if _, err := ask(n.ns, "10.78.0.1:18082"); err == nil {
		t.Error("the port answers after DEL")
	}
}

// TestBandwidth: the bandwidth capability puts a tbf on each end.
func TestBandwidth(t *testing.T) {
	n := newNode(t, "bw")
	l := n.list("bw", "1.0.0", n.conf(map[string]any{"subnet": "10.79.0.0/24", "capabilities": map[string]bool{"bandwidth": true}}))
	sb, rt := n.sandbox("bw1")
	rt.CapabilityArgs = map[string]any{"bandwidth": map[string]any{"ingressRate": 8_000_000, "ingressBurst": 800_000, "egressRate": 4_000_000, "egressBurst": 400_000}}
	n.add(l, rt)
	ep, err := n.host().LookupEndpoint("bw", "bw1", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if out := testns.Run(t, n.ns, "tc", "qdisc", "show", "dev", ep.HostIfName); !strings.Contains(out, "tbf") || !strings.Contains(out, "rate 8Mbit") {
		t.Errorf("host end (ingress): %s", out)
	}
	if out := testns.Run(t, sb, "tc", "qdisc", "show", "dev", "eth0"); !strings.Contains(out, "tbf") || !strings.Contains(out, "rate 4Mbit") {
		t.Errorf("sandbox end (egress): %s", out)
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	testns.Run(t, sb, "tc", "qdisc", "del", "dev", "eth0", "root")
	if err := n.cni.CheckNetworkList(context.Background(), l, rt); err == nil || !strings.Contains(err.Error(), "egress") {
		t.Errorf("CHECK without the egress limit: %v", err)
	}
}

// needPlugins skips the test unless the reference plugins are installed,
// with one line as testns.NeedProgram writes it (and logs it for CI).
func needPlugins(t *testing.T, names ...string) {
	t.Helper()
	for _, p := range names {
		if _, err := os.Stat(filepath.Join(refPlugins, p)); err != nil {
			msg := fmt.Sprintf("CNI plugin %s not found in %s (apt-get install containernetworking-plugins) %s", p, refPlugins, testns.MissingMarker)
			if log := os.Getenv(testns.MissingLogEnv); log != "" {
				if f, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o666); err == nil {
					fmt.Fprintf(f, "%s: %s\n", t.Name(), msg)
					f.Close()
				}
			}
			t.Skip(msg)
		}
	}
}
