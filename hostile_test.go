package sandnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/internal/nlwrap"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

// hostState is everything bad input must leave as it was: records, leases,
// veths, networks, links and sandnet's rules in the host namespace.
func hostState(t *testing.T, h *Host) string {
	t.Helper()
	nets, _ := h.Networks()
	nl, err := h.ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	links, err := nlwrap.Retry(nl.LinkList)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return fmt.Sprint(hostResidue(t, h), nets, names, sandnetRules(t, h.ns), portEntries(t, h))
}

// TestHostileAttachInput: every field of Network and AttachOptions that
// could carry hostile input is refused with a typed error, before anything
// changes; names that look like iptables arguments never get that far.
func TestHostileAttachInput(t *testing.T) {
	h := newTestHost(t)
	sb := testns.New(t, "hostile")
	good := Network{Name: "good", Subnet: netip.MustParsePrefix("10.97.40.0/24")}
	mustAttach(t, h, testns.New(t, "first"), good, AttachOptions{Ports: mustPorts(t, "18400:80")})
	before := hostState(t, h)
	sub := netip.MustParsePrefix("10.97.41.0/24")
	long := strings.Repeat("a", 65)
	cases := []struct {
		name string
		n    Network
		o    AttachOptions
		want error
	}{
		// Network names: they become file names, bridge names and rule comments.
		{"name with iptables args", Network{Name: "x -j ACCEPT", Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"name with space", Network{Name: "a b", Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"name starting with -", Network{Name: "-x", Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"name with newline", Network{Name: "x\n-A INPUT -j DROP", Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"name ../", Network{Name: "../x", Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"name over-long", Network{Name: long, Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"name shell", Network{Name: "x;rm${IFS}-rf", Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"name quote", Network{Name: `x"y`, Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"empty name", Network{Subnet: sub}, AttachOptions{}, ErrInvalid},
		// Other Network fields.
		{"driver", Network{Name: "d", Driver: "bridge -j ACCEPT", Subnet: sub}, AttachOptions{}, ErrInvalid},
		{"mtu low", Network{Name: "m", Subnet: sub, MTU: 10}, AttachOptions{}, ErrInvalid},
		{"mtu high", Network{Name: "m", Subnet: sub, MTU: 70000}, AttachOptions{}, ErrInvalid},
		{"bridge with args", Network{Name: "b", Subnet: sub, Bridge: "br -j ACCEPT"}, AttachOptions{}, ErrInvalid},
		{"bridge with newline", Network{Name: "b", Subnet: sub, Bridge: "br\nx"}, AttachOptions{}, ErrInvalid},
		{"bridge ..", Network{Name: "b", Subnet: sub, Bridge: ".."}, AttachOptions{}, ErrInvalid},
		{"bridge /", Network{Name: "b", Subnet: sub, Bridge: "a/b"}, AttachOptions{}, ErrInvalid},
		{"subnet6 is v4", Network{Name: "s", Subnet6: sub}, AttachOptions{}, ErrInvalid},
		{"subnet /31", Network{Name: "s", Subnet: netip.MustParsePrefix("10.97.41.0/31")}, AttachOptions{}, ErrInvalid},
		{"gateway is network", Network{Name: "s", Subnet: sub, Gateway: sub.Addr()}, AttachOptions{}, ErrInvalid},
		// Subnets that are not unicast ranges of their own (issue 16 item 7).
		{"subnet loopback", Network{Name: "s", Subnet: netip.MustParsePrefix("127.0.0.0/24")}, AttachOptions{}, ErrInvalid},
		{"subnet multicast", Network{Name: "s", Subnet: netip.MustParsePrefix("224.0.0.0/24")}, AttachOptions{}, ErrInvalid},
		{"subnet 239", Network{Name: "s", Subnet: netip.MustParsePrefix("239.1.0.0/16")}, AttachOptions{}, ErrInvalid},
		{"subnet link-local", Network{Name: "s", Subnet: netip.MustParsePrefix("169.254.7.0/24")}, AttachOptions{}, ErrInvalid},
		{"subnet everything", Network{Name: "s", Subnet: netip.MustParsePrefix("0.0.0.0/0")}, AttachOptions{}, ErrInvalid},
		{"subnet 0/8", Network{Name: "s", Subnet: netip.MustParsePrefix("0.0.0.0/24")}, AttachOptions{}, ErrInvalid},
		{"subnet over loopback", Network{Name: "s", Subnet: netip.MustParsePrefix("64.0.0.0/2")}, AttachOptions{}, ErrInvalid},
		{"subnet6 multicast", Network{Name: "s", Subnet: sub, Subnet6: netip.MustParsePrefix("ff02::/64")}, AttachOptions{}, ErrInvalid},
		{"subnet6 link-local", Network{Name: "s", Subnet: sub, Subnet6: netip.MustParsePrefix("fe80::/64")}, AttachOptions{}, ErrInvalid},
		{"subnet6 everything", Network{Name: "s", Subnet6: netip.MustParsePrefix("::/0")}, AttachOptions{}, ErrInvalid},
		{"subnet6 loopback", Network{Name: "s", Subnet6: netip.MustParsePrefix("::/120")}, AttachOptions{}, ErrInvalid},
		{"subnet6 v4-mapped", Network{Name: "s", Subnet6: netip.MustParsePrefix("::ffff:10.0.0.0/120")}, AttachOptions{}, ErrInvalid},
		{"macvlan subnet loopback", Network{Name: "s", Driver: DriverMacvlan, Parent: "eth0", Subnet: netip.MustParsePrefix("127.1.0.0/24")}, AttachOptions{}, ErrInvalid},
		{"gateway is broadcast", Network{Name: "s", Subnet: sub, Gateway: netip.MustParseAddr("10.97.41.255")}, AttachOptions{}, ErrInvalid},
		{"range outside", Network{Name: "s", Subnet: sub, IPRange: netip.MustParsePrefix("10.97.42.0/25")}, AttachOptions{}, ErrInvalid},
		{"gateway6 without subnet6", Network{Name: "s", Subnet: sub, Gateway6: netip.MustParseAddr("fd00::1")}, AttachOptions{}, ErrInvalid},
		{"parent on bridge", Network{Name: "s", Subnet: sub, Parent: "eth0"}, AttachOptions{}, ErrInvalid},
		{"vni on bridge", Network{Name: "s", Subnet: sub, VNI: 5}, AttachOptions{}, ErrInvalid},
		{"macvlan parent args", Network{Name: "s", Driver: DriverMacvlan, Subnet: sub, Parent: "eth0 -j"}, AttachOptions{}, ErrInvalid},
		{"macvlan mode", Network{Name: "s", Driver: DriverMacvlan, Subnet: sub, Parent: "eth0", MacvlanMode: "evil"}, AttachOptions{}, ErrInvalid},
		{"overlay vni 0", Network{Name: "s", Driver: DriverOverlay, Subnet: sub}, AttachOptions{}, ErrInvalid},
		// AttachOptions.
		{"sandbox id args", good, AttachOptions{SandboxID: "x -j ACCEPT"}, ErrInvalid},
		{"sandbox id ../", good, AttachOptions{SandboxID: "../../etc"}, ErrInvalid},
		{"sandbox id newline", good, AttachOptions{SandboxID: "x\ny"}, ErrInvalid},
		{"sandbox id over-long", good, AttachOptions{SandboxID: long}, ErrInvalid},
		{"ifname ../", good, AttachOptions{IfName: "../e"}, ErrInvalid},
		{"ifname newline", good, AttachOptions{IfName: "e\n0"}, ErrInvalid},
		{"ifname :", good, AttachOptions{IfName: "eth0:1 x"}, ErrInvalid},
		{"ip6 is v4", good, AttachOptions{IP6: netip.MustParseAddr("10.0.0.1")}, ErrInvalid},
		{"mac multicast", good, AttachOptions{MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}}, ErrInvalid},
		{"mac length", good, AttachOptions{MAC: net.HardwareAddr{2, 2, 3, 4}}, ErrInvalid},
		{"hostname space", good, AttachOptions{Hostname: "a b"}, ErrInvalid},
		{"hostname newline", good, AttachOptions{Hostname: "a\n1.2.3.4 evil"}, ErrInvalid},
		{"hostname over-long", good, AttachOptions{Hostname: strings.Repeat("a.", 130)}, ErrInvalid},
		{"alias empty label", good, AttachOptions{Aliases: []string{"a..b"}}, ErrInvalid},
		{"search newline", good, AttachOptions{DNSSearch: []string{"x\nnameserver 6.6.6.6"}}, ErrInvalid},
		{"search space", good, AttachOptions{DNSSearch: []string{"a b"}}, ErrInvalid},
		{"option newline", good, AttachOptions{DNSOptions: []string{"ndots:1\nnameserver 6.6.6.6"}}, ErrInvalid},
		{"dns zero", good, AttachOptions{DNS: []netip.Addr{{}}}, ErrInvalid},
		{"extra host newline", good, AttachOptions{ExtraHosts: map[string]netip.Addr{"a\n6.6.6.6 b": netip.MustParseAddr("10.0.0.1")}}, ErrInvalid},
		{"resolv path relative", good, AttachOptions{ResolvConfPath: "../../etc/resolv.conf"}, ErrInvalid},
		{"hosts path unclean", good, AttachOptions{HostsPath: "/tmp/../etc/hosts"}, ErrInvalid},
		// Published ports, as structs (ParsePort is fuzzed in nat).
		{"port proto", good, AttachOptions{Ports: []PortMapping{{HostPort: 18401, ContainerPort: 80, Proto: "icmp"}}}, ErrInvalid},
		{"port proto args", good, AttachOptions{Ports: []PortMapping{{HostPort: 18401, ContainerPort: 80, Proto: "tcp -j ACCEPT"}}}, ErrInvalid},
		{"container port 0", good, AttachOptions{Ports: []PortMapping{{HostPort: 18401, Proto: "tcp"}}}, ErrInvalid},
		{"host ip ::1", good, AttachOptions{Ports: []PortMapping{{HostIP: netip.IPv6Loopback(), HostPort: 18401, ContainerPort: 80}}}, ErrInvalid},
		{"host ip zone", good, AttachOptions{Ports: []PortMapping{{HostIP: netip.MustParseAddr("fe80::1%eth0"), HostPort: 18401, ContainerPort: 80}}}, ErrInvalid},
		{"same host port twice", good, AttachOptions{Ports: mustPorts(t, "18402:80", "18402:81")}, ErrInvalid},
		{"port taken", good, AttachOptions{Ports: mustPorts(t, "18400:81")}, ErrInUse},
		{"port on internal", Network{Name: "int", Subnet: sub, Internal: true}, AttachOptions{Ports: mustPorts(t, "18403:80")}, ErrInvalid},
	}
	for _, c := range cases {
		_, err := h.AttachNS(context.Background(), sb, c.n, c.o)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if after := hostState(t, h); after != before {
			t.Fatalf("%s: state changed:\n%s\nwant\n%s", c.name, after, before)
		}
	}
	// The other entry points.
	for _, name := range []string{"x -j ACCEPT", "../x", "a\nb", long} {
		if _, err := h.CreateNetwork(context.Background(), Network{Name: name, Subnet: sub}); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateNetwork(%q) = %v", name, err)
		}
		if err := h.RemoveNetwork(context.Background(), name); !errors.Is(err, ErrInvalid) {
			t.Errorf("RemoveNetwork(%q) = %v", name, err)
		}
		if err := h.DetachSandbox(context.Background(), "good", name); !errors.Is(err, ErrInvalid) {
			t.Errorf("DetachSandbox(%q) = %v", name, err)
		}
		if _, err := h.Network(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("Network(%q) = %v", name, err)
		}
		if _, err := h.Check(context.Background(), &Endpoint{Network: name, SandboxID: "x"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%q) = %v", name, err)
		}
		if _, err := h.Repair(context.Background(), &Endpoint{Network: name, SandboxID: "x"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Repair(%q) = %v", name, err)
		}
	}
	if err := h.Detach(context.Background(), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Detach(nil) = %v", err)
	}
	if after := hostState(t, h); after != before {
		t.Fatalf("state changed:\n%s\nwant\n%s", after, before)
	}
}

func mustPorts(t *testing.T, specs ...string) []PortMapping {
	t.Helper()
	var all []PortMapping
	for _, s := range specs {
		ps, err := ParsePort(s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ps...)
	}
	return all
}

// TestRuleCommentsAreOneArgument: whatever a nat.Network carries, each
// rule is one iptables-restore line and its comment one argument.
func TestRuleCommentsAreOneArgument(t *testing.T) {
	n := nat.Network{Name: "x -j ACCEPT", Bridge: "br0", Subnet: netip.MustParsePrefix("10.97.50.0/24")}
	for _, r := range nat.NetworkRules(n) {
		line := r.Line()
		if strings.ContainsAny(line, "\n\r") {
			t.Fatalf("rule line with a newline: %q", line)
		}
		if !strings.Contains(line, `--comment "sandnet net=x -j ACCEPT `) {
			t.Errorf("comment not quoted: %s", line)
		}
	}
	for _, name := range []string{"x\n-A INPUT -j DROP", "x\n-F", "x\rCOMMIT"} {
		n.Name = name
		for _, r := range nat.NetworkRules(n) {
			if strings.ContainsAny(r.Line(), "\n\r") {
				t.Fatalf("a newline in a name splits the rule: %q", r.Line())
			}
		}
	}
	n.Name, n.Bridge = "x", "br\n-F"
	for _, r := range nat.NetworkRules(n) {
		if strings.ContainsAny(r.Line(), "\n\r") {
			t.Fatalf("a newline in a name splits the rule: %q", r.Line())
		}
	}
}

// TestHostileStateFiles: a corrupt record, a record or state dir from a
// future version, and symlinks planted in the state dir give clear, typed
// errors; the files are not overwritten and symlink targets not touched.
func TestHostileStateFiles(t *testing.T) {
	ctx := context.Background()
	h := newTestHost(t)
	n := Network{Name: "files", Subnet: netip.MustParsePrefix("10.97.60.0/24")}
	sb := testns.New(t, "files")
	if fi, err := os.Stat(h.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v, %v; want 0700", fi.Mode(), err)
	}
	for _, sub := range []string{"networks", "endpoints"} {
		if fi, err := os.Stat(filepath.Join(h.dir, sub)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, %v; want 0700", sub, fi.Mode(), err)
		}
	}
	if _, err := h.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	rec := h.networkPath("files")
	good, _ := os.ReadFile(rec)
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("precious\n"), 0o600)

	for _, c := range []struct {
		name    string
		content []byte // nil: a symlink to target
		want    error
	}{
		{"corrupt JSON", []byte(`{"version": 1, "network": {`), ErrInvalid},
		{"future version", []byte(`{"version": 99, "network": {"name": "files"}}`), ErrStateVersion},
		{"no version", []byte(`{"network": {"name": "files"}}`), ErrInvalid},
		{"symlink", nil, ErrInvalid},
	} {
		os.Remove(rec)
		if c.content == nil {
			if err := os.Symlink(target, rec); err != nil {
				t.Fatal(err)
			}
		} else {
			os.WriteFile(rec, c.content, 0o600)
		}
		h2, err := NewHostNS(h.ns, HostConfig{StateDir: h.dir}) // a fresh Host: no cache
		if err != nil {
			t.Fatal(err)
		}
		_, err = h2.AttachNS(ctx, sb, n, AttachOptions{})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: attach = %v, want %v", c.name, err, c.want)
		}
		if _, err := h2.CreateNetwork(ctx, n); !errors.Is(err, c.want) {
			t.Errorf("%s: create network = %v, want %v", c.name, err, c.want)
		}
		if err := h2.RemoveNetwork(ctx, "files"); !errors.Is(err, c.want) {
			t.Errorf("%s: remove network = %v, want %v", c.name, err, c.want)
		}
		if _, err := h2.GC(ctx); !errors.Is(err, c.want) {
			t.Errorf("%s: GC = %v, want %v", c.name, err, c.want)
		}
		if _, err := h2.Reconcile(ctx); !errors.Is(err, c.want) {
			t.Errorf("%s: Reconcile = %v, want %v", c.name, err, c.want)
		}
		if c.content != nil {
			if b, _ := os.ReadFile(rec); string(b) != string(c.content) {
				t.Errorf("%s: the record was overwritten: %q", c.name, b)
			}
		} else if fi, err := os.Lstat(rec); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: the symlink was replaced", c.name)
		}
		if b, _ := os.ReadFile(target); string(b) != "precious\n" {
			t.Fatalf("%s: the symlink's target changed: %q", c.name, b)
		}
		h2.Close()
	}
	os.Remove(rec)
	os.WriteFile(rec, good, 0o600)

	// A symlink planted as a port's file in the port table, and as an
	// endpoint record.
	ports := h.portPath(PortMapping{Proto: "tcp", HostPort: 18500})
	os.MkdirAll(filepath.Dir(ports), 0o700)
	os.Symlink(target, ports)
	if _, err := h.AttachNS(ctx, sb, n, AttachOptions{Ports: mustPorts(t, "18500:80")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("attach with a symlinked port table = %v", err)
	}
	os.Remove(ports)
	epPath := h.endpointPath("files", endpointID("files", sb.Name(), "eth0"))
	os.MkdirAll(filepath.Dir(epPath), 0o700)
	os.Symlink(target, epPath)
	if _, err := h.AttachNS(ctx, sb, n, AttachOptions{}); err == nil {
		t.Error("attach over a symlinked endpoint record succeeded")
	}
	if _, err := h.GC(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("GC with a symlinked endpoint record = %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("the symlink's target changed: %q", b)
	}
	os.Remove(epPath)
	if left := hostResidue(t, h); len(left) > 0 {
		t.Errorf("residue: %v", left)
	}
	// A state dir from the future, and one that is a symlink.
	future := t.TempDir()
	os.WriteFile(filepath.Join(future, "version"), []byte("99\n"), 0o600)
	if _, err := NewHostNS(h.ns, HostConfig{StateDir: future}); !errors.Is(err, ErrStateVersion) {
		t.Errorf("future state dir: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(future, "version")); string(b) != "99\n" {
		t.Errorf("future version file overwritten: %q", b)
	}
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(t.TempDir(), link)
	if _, err := NewHostNS(h.ns, HostConfig{StateDir: link}); !errors.Is(err, ErrInvalid) {
		t.Errorf("symlinked state dir: %v", err)
	}
}

// TestHostileSubnetHoldsHostAddress (issue 16 item 7): a bridge network
// whose subnet holds an address the host namespace has on another link
// (its LAN address) is refused with ErrInvalid and leaves nothing; one
// that only overlaps a route of the host's is made, with a warning.
func TestHostileSubnetHoldsHostAddress(t *testing.T) {
	hns := testns.New(t, "host")
	var logs strings.Builder
	var mu sync.Mutex
	h := openTestHost(t, hns, HostConfig{StateDir: filepath.Join(t.TempDir(), "state"),
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	lan := testns.New(t, "lan")
	testns.Run(t, hns, "ip", "link", "add", "h16-lan0", "type", "veth", "peer", "name", "eth0", "netns", lan.Name())
	testns.Run(t, hns, "ip", "addr", "add", "192.168.200.7/24", "dev", "h16-lan0")
	testns.Run(t, hns, "ip", "addr", "add", "fd00:200::7/64", "dev", "h16-lan0", "nodad")
	testns.Run(t, hns, "ip", "link", "set", "h16-lan0", "up")
	testns.Run(t, hns, "ip", "route", "add", "172.30.0.0/16", "via", "192.168.200.1")
	before := hostState(t, h)
	ctx := context.Background()
	sb := testns.New(t, "sb")
	for _, n := range []Network{
		{Name: "lan", Subnet: netip.MustParsePrefix("192.168.200.0/24")},
		{Name: "lan2", Subnet: netip.MustParsePrefix("192.168.0.0/16")},
		{Name: "lan6", Subnet: netip.MustParsePrefix("10.97.70.0/24"), Subnet6: netip.MustParsePrefix("fd00:200::/64")},
	} {
		_, err := h.CreateNetwork(ctx, n)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "h16-lan0") {
			t.Errorf("network %s over the host's LAN address: %v, want ErrInvalid naming h16-lan0", n.Subnet, err)
		}
		if _, err := h.AttachNS(ctx, sb, n, AttachOptions{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("attach to network %s over the host's LAN address: %v, want ErrInvalid", n.Subnet, err)
		}
		if after := hostState(t, h); after != before {
			t.Fatalf("state changed:\n%s\nwant\n%s", after, before)
		}
	}
	if _, err := h.CreateNetwork(ctx, Network{Name: "routed", Subnet: netip.MustParsePrefix("172.30.5.0/24")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.RemoveNetwork(ctx, "routed") })
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "overlaps a route") || !strings.Contains(logs.String(), "172.30.0.0/16") {
		t.Errorf("no warning about the route 172.30.0.0/16:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestPublishOnInternalRefused (issue 16 item 9): -p on an --internal
// network, named in full or by name only, is refused before anything
// changes.
func TestPublishOnInternalRefused(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	if _, err := h.CreateNetwork(ctx, Network{Name: "int", Subnet: netip.MustParsePrefix("10.97.45.0/24"), Internal: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.RemoveNetwork(ctx, "int") })
	before := hostState(t, h)
	sb := testns.New(t, "sb")
	for _, n := range []Network{{Name: "int"}, {Name: "int", Subnet: netip.MustParsePrefix("10.97.45.0/24"), Internal: true}} {
		if _, err := h.AttachNS(ctx, sb, n, AttachOptions{Ports: mustPorts(t, "18450:80")}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "internal") {
			t.Errorf("publishing on an internal network: %v, want ErrInvalid", err)
		}
		if after := hostState(t, h); after != before {
			t.Fatalf("state changed:\n%s\nwant\n%s", after, before)
		}
	}
}

// TestStateDirServesOneNamespace (issue 16 item 9): a state dir records
// the host namespace it serves; a Host over another namespace is refused
// while that one lives, and takes the dir over once it is gone.
func TestStateDirServesOneNamespace(t *testing.T) {
	h := newTestHost(t)
	other := testns.New(t, "other")
	if _, err := NewHostNS(other, HostConfig{StateDir: h.dir}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "serves host namespace") {
		t.Fatalf("a second host namespace over the same state dir: %v, want ErrInvalid", err)
	}
	h2, err := NewHostNS(h.ns, HostConfig{StateDir: h.dir}) // the same namespace again: fine
	if err != nil {
		t.Fatal(err)
	}
	h2.Close()
	// The first namespace gone, the dir's state is stale: taken over.
	gone := testns.New(t, "gone")
	dir := filepath.Join(t.TempDir(), "state")
	h3, err := NewHostNS(gone, HostConfig{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h3.Close()
	gone.Close()
	if err := netns.Delete(context.Background(), gone.Name()); err != nil {
		t.Fatal(err)
	}
	h4, err := NewHostNS(other, HostConfig{StateDir: dir})
	if err != nil {
		t.Fatalf("taking over the state dir of a namespace that is gone: %v", err)
	}
	h4.Close()
}

// TestResolvConfPathThroughSymlinkRefused (issue 16 item 6): a
// ResolvConfPath or HostsPath inside a container's root filesystem whose
// etc is a symlink out of it is refused (ErrInvalid), the file behind the
// link untouched and nothing of the attach left.
func TestResolvConfPathThroughSymlinkRefused(t *testing.T) {
	h := newTestHost(t)
	tmp := t.TempDir()
	hostEtc := filepath.Join(tmp, "host-etc")
	os.Mkdir(hostEtc, 0o755)
	for _, f := range []string{"resolv.conf", "hosts"} {
		os.WriteFile(filepath.Join(hostEtc, f), []byte("precious\n"), 0o644)
	}
	rootfs := filepath.Join(tmp, "rootfs")
	os.Mkdir(rootfs, 0o755)
	if err := os.Symlink(hostEtc, filepath.Join(rootfs, "etc")); err != nil {
		t.Fatal(err)
	}
	n := Network{Name: "ctr", Subnet: netip.MustParsePrefix("10.97.46.0/24")}
	sb := testns.New(t, "ctr")
	for _, o := range []AttachOptions{
		{ResolvConfPath: filepath.Join(rootfs, "etc", "resolv.conf")},
		{HostsPath: filepath.Join(rootfs, "etc", "hosts")},
	} {
		if _, err := h.AttachNS(context.Background(), sb, n, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("attach writing through a symlinked etc (%+v): %v, want ErrInvalid", o, err)
		}
		for _, f := range []string{"resolv.conf", "hosts"} {
			if b, _ := os.ReadFile(filepath.Join(hostEtc, f)); string(b) != "precious\n" {
				t.Fatalf("%s behind the symlink was written: %q", f, b)
			}
		}
		if left := hostResidue(t, h); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}
}
