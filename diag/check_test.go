package diag

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/testns"
)

func TestCheckAllPass(t *testing.T) {
	l := newLab(t)
	expectAllPass(t, l.check(t, CheckOptions{}))
}

func TestCheckRouteRemoved(t *testing.T) {
	l := newLab(t)
	testns.Run(t, l.sb, "ip", "route", "del", "default")
	rs := l.check(t, CheckOptions{})
	expectOnly(t, rs, CheckRoute, "no default route", "ip -n "+l.sb.Name()+" route add default via 10.77.0.1 dev eth0")
}

func TestCheckRouteWrongGateway(t *testing.T) {
	l := newLab(t)
	testns.Run(t, l.sb, "ip", "route", "replace", "default", "via", "10.77.0.254", "dev", "eth0")
	expectOnly(t, l.check(t, CheckOptions{}), CheckRoute, "via 10.77.0.254", "gateway is 10.77.0.1", "route replace default via 10.77.0.1")
}

func TestCheckLinkDown(t *testing.T) {
	l := newLab(t)
	testns.Run(t, l.sb, "ip", "link", "set", "eth0", "down")
	rs := l.check(t, CheckOptions{})
	expectOnly(t, rs, CheckLinkUp, "eth0 is down", "ip -n "+l.sb.Name()+" link set eth0 up")
	blockedBy(t, rs, CheckGateway, CheckLinkUp)
	blockedBy(t, rs, CheckBridgePort, CheckLinkUp)
	for _, n := range []string{CheckForwarding, CheckFirewall, CheckGatewayIP, CheckResolvConf} {
		if r, _ := Find(rs, n); r.Status != Pass && !noIptablesSave(r) {
			t.Errorf("%s = %s, want pass", n, r.Status)
		}
	}
}

func TestCheckGatewayAddressRemoved(t *testing.T) {
	l := newLab(t)
	testns.Run(t, l.hns, "ip", "addr", "del", "10.77.0.1/24", "dev", l.ep.Bridge)
	rs := l.check(t, CheckOptions{})
	expectOnly(t, rs, CheckGatewayIP, "bridge "+l.ep.Bridge+" lacks the gateway address 10.77.0.1", "addr add 10.77.0.1/24 dev "+l.ep.Bridge)
	blockedBy(t, rs, CheckGateway, CheckGatewayIP)

	// Without the host's view, the same break shows from inside: the gateway is silent.
	rs = Check(context.Background(), l.sb, CheckOptions{ResolveName: "web"})
	for _, r := range rs {
		t.Log(r)
	}
	if r, _ := Find(rs, CheckGateway); r.Status != Fail || !contains(r.Reason, "10.77.0.1 does not answer on eth0") {
		t.Errorf("gateway without a host = %s (%s), want fail: does not answer", r.Status, r.Reason)
	}
	for _, n := range []string{CheckBridgePort, CheckGatewayIP, CheckForwarding, CheckFirewall} {
		if r, _ := Find(rs, n); r.Status != Skip || !contains(r.Reason, "no host given") {
			t.Errorf("%s without a host = %s (%s), want skip: no host given", n, r.Status, r.Reason)
		}
	}
}

func TestCheckResolvConfPointsNowhere(t *testing.T) {
	l := newLab(t)
	writeResolvConf(t, l.sb, "nameserver 10.77.0.250\n")
	rs := l.check(t, CheckOptions{Timeout: 500e6})
	expectOnly(t, rs, CheckDNSServers, "10.77.0.250 does not answer DNS", "/etc/netns/"+l.sb.Name()+"/resolv.conf")
	blockedBy(t, rs, CheckDNSResolve, CheckDNSServers)
}

func TestCheckResolvConfEmpty(t *testing.T) {
	l := newLab(t)
	writeResolvConf(t, l.sb, "# nothing\n")
	expectOnly(t, l.check(t, CheckOptions{}), CheckResolvConf, "lists no nameserver")
}

func TestCheckNameDoesNotResolve(t *testing.T) {
	l := newLab(t)
	expectOnly(t, l.check(t, CheckOptions{ResolveName: "nosuch"}), CheckDNSResolve, "nosuch does not resolve", "NXDOMAIN")
}

func TestCheckForwardingOff(t *testing.T) {
	l := newLab(t)
	if _, err := l.hns.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	expectOnly(t, l.check(t, CheckOptions{}), CheckForwarding, "net.ipv4.ip_forward is 0", "sysctl -w net.ipv4.ip_forward=1")
}

func TestCheckForwardDropRule(t *testing.T) {
	testns.NeedProgram(t, "breaking the FORWARD chain by hand", "iptables")
	l := newLab(t)
	testns.Run(t, l.hns, "iptables", "-I", "FORWARD", "-i", l.ep.Bridge, "-j", "DROP")
	expectOnly(t, l.check(t, CheckOptions{}), CheckFirewall,
		"-A FORWARD -i "+l.ep.Bridge+" -j DROP", "iptables -D FORWARD -i "+l.ep.Bridge+" -j DROP")
}

func TestCheckForwardPolicyDrop(t *testing.T) {
	testns.NeedProgram(t, "breaking the FORWARD chain by hand", "iptables")
	l := newLab(t)
	testns.Run(t, l.hns, "iptables", "-P", "FORWARD", "DROP")
	// sandnet's own forward chain accepts the network's traffic whatever the policy.
	expectAllPass(t, l.check(t, CheckOptions{}))
	// Without those rules (flushed by hand), the DROP policy is the culprit.
	testns.Run(t, l.hns, "iptables", "-F", "SANDNET-FORWARD")
	rs := l.check(t, CheckOptions{})
	expectOnly(t, rs, CheckFirewall, "FORWARD policy is DROP", "iptables -I FORWARD -i "+l.ep.Bridge+" -j ACCEPT")
	// Docker's answer: accept what comes from the bridge.
	testns.Run(t, l.hns, "iptables", "-A", "FORWARD", "-i", l.ep.Bridge, "!", "-o", l.ep.Bridge, "-j", "ACCEPT")
	expectAllPass(t, l.check(t, CheckOptions{}))
}

func TestCheckBridgePortDown(t *testing.T) {
	l := newLab(t)
	testns.Run(t, l.hns, "ip", "link", "set", l.ep.HostIfName, "down")
	rs := l.check(t, CheckOptions{})
	expectOnly(t, rs, CheckBridgePort, "host-side veth "+l.ep.HostIfName+" is down", "link set "+l.ep.HostIfName+" up")
	blockedBy(t, rs, CheckGateway, CheckBridgePort)
}

func TestCheckBridgePortDetached(t *testing.T) {
	l := newLab(t)
	testns.Run(t, l.hns, "ip", "link", "set", l.ep.HostIfName, "nomaster")
	expectOnly(t, l.check(t, CheckOptions{}), CheckBridgePort, "is not a port of bridge "+l.ep.Bridge, "master "+l.ep.Bridge)
}

type fakeRules struct {
	missing []string
	err     error
}

func (f fakeRules) MissingRules(ctx context.Context, ep *sandnet.Endpoint) ([]string, error) {
	return f.missing, f.err
}

func TestCheckNATRules(t *testing.T) {
	l := newLab(t)
	rs := l.check(t, CheckOptions{})
	if r, _ := Find(rs, CheckNATRules); r.Status != Skip || r.Reason != "no firewall checker" {
		t.Errorf("nat-rules without a checker = %s (%s)", r.Status, r.Reason)
	}
	expectAllPass(t, l.check(t, CheckOptions{Rules: fakeRules{}}))
	rule := "iptables -t nat -A POSTROUTING -s 10.77.0.0/24 ! -o " + l.ep.Bridge + " -j MASQUERADE"
	expectOnly(t, l.check(t, CheckOptions{Rules: fakeRules{missing: []string{rule}}}), CheckNATRules, "missing in", rule)
	expectOnly(t, l.check(t, CheckOptions{Rules: fakeRules{err: errors.New("boom")}}), CheckNATRules, "boom")
}

func TestCheckInternalNetwork(t *testing.T) {
	hns := testns.New(t, "host")
	h, err := sandnet.NewHostNS(hns, sandnet.HostConfig{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sb := testns.New(t, "sb")
	ep, err := h.AttachNS(context.Background(), sb, sandnet.Network{Name: "int", Subnet: labSubnet, Internal: true}, sandnet.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Detach(context.Background(), ep)
	writeResolvConf(t, sb, "nameserver 127.0.0.1\n")
	startDNS(t, sb, netipMust("127.0.0.1"), nil)
	testns.Run(t, sb, "ip", "link", "set", "lo", "up")
	rs := Check(context.Background(), sb, CheckOptions{Host: h})
	for _, r := range rs {
		t.Log(r)
		if r.Status == Fail {
			t.Errorf("%s failed on an internal network: %s", r.Name, r.Reason)
		}
	}
	for _, n := range []string{CheckRoute, CheckForwarding, CheckFirewall} {
		if r, _ := Find(rs, n); r.Status != Skip || !contains(r.Reason, "internal") {
			t.Errorf("%s = %s (%s), want skip: internal", n, r.Status, r.Reason)
		}
	}
	if r, _ := Find(rs, CheckGateway); r.Status != Pass {
		t.Errorf("gateway = %s, want pass", r.Status)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
