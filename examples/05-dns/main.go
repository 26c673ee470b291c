// 05-dns: how a sandbox finds the others by name. Run as root:
//
//	go run ./examples/05-dns [-keep]
//
// On a Docker user-defined network, `ping db` works from any container:
// each container's /etc/resolv.conf names one server, the network's
// embedded name server, and that server knows every container of the
// network by name. Two pieces make it work:
//
//   - a resolv.conf per sandbox. A namespace has no files of its own: it
//     shares the host's /etc. `ip netns exec NAME` therefore bind-mounts
//     every file of /etc/netns/NAME/ over /etc/ for the command it runs, so
//     /etc/netns/NAME/resolv.conf becomes that command's /etc/resolv.conf;
//   - a name server on the network's gateway address (the bridge's, in the
//     host namespace), which answers for the network's sandboxes: their
//     hostnames, aliases and sandbox IDs.
//
// The lab: a host namespace, two sandboxes "a" (hostname web, alias www)
// and "b" (hostname db, alias postgres) on one bridge network,
// 10.50.0.0/24. The host's own resolver configuration is a temp file with
// no name server, so nothing here depends on, or is forwarded to, the
// machine's real resolvers.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/netns"
)

func main() { guide.Main("ex05", run) }

var network = sandnet.Network{Name: "ex05", Subnet: netip.MustParsePrefix("10.50.0.0/24")}

func run(ctx context.Context, lab *guide.Lab) error {
	guide.Step(1, "a lab host namespace and two sandboxes, a and b")
	hostNS, err := lab.NewNS(ctx, "host")
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
	dir, err := os.MkdirTemp("", "sandnet-ex05-")
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { os.RemoveAll(dir) })
	// The "host's" resolv.conf: a search domain, no server. Sandboxes
	// inherit the search domain; names the network does not know get
	// SERVFAIL instead of being forwarded to a real server.
	hostResolv := filepath.Join(dir, "host-resolv.conf")
	if err := os.WriteFile(hostResolv, []byte("search lab.example\n"), 0o644); err != nil {
		return err
	}
	host, err := sandnet.NewHostNS(hostNS, sandnet.HostConfig{
		StateDir:     filepath.Join(dir, "state"),
		ResolvConf:   hostResolv,
		ResolvedConf: filepath.Join(dir, "no-resolved.conf"),
		// The name server runs inside this program, for as long as it
		// runs. The default (DNSHelper) runs it in a small detached helper
		// process (this program, re-executed), so names keep resolving after
		// the attaching program exits, as aardvark-dns does for podman; the
		// helper stops by itself after the last sandbox detaches. In-process
		// keeps this example to one process you can see start and end.
		DNS: sandnet.DNSInProcess,
	})
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { host.Close() })

	guide.Step(2, "attach a (hostname web, alias www) and b (hostname db, alias postgres)")
	guide.Say("Watch for the resolv.conf and hosts files written under %s/NAME.", guide.EtcNetns)
	epA, err := host.AttachNS(ctx, a, network, sandnet.AttachOptions{SandboxID: "a", Hostname: "web", Aliases: []string{"www"}})
	if err != nil {
		return err
	}
	epB, err := host.AttachNS(ctx, b, network, sandnet.AttachOptions{SandboxID: "b", Hostname: "db", Aliases: []string{"postgres"}})
	if err != nil {
		return err
	}
	gw := epA.Gateway
	guide.Say("a is %s, b is %s, the gateway (the bridge in the host) is %s", epA.Addr(false), epB.Addr(false), gw)

	guide.Step(3, "a's resolv.conf: a file in the host's /etc/netns, seen as /etc/resolv.conf")
	path := filepath.Join(guide.EtcNetns, a.Name(), "resolv.conf")
	file, err := guide.Look(ctx, nil, "cat", path)
	if err != nil {
		return err
	}
	guide.Say("(%s is a symlink to %s: the files live in memory,\n"+
		"as the namespace does, and cost one inode on /etc instead of three.)", filepath.Dir(path), filepath.Join(dns.NetnsHomeDir(), a.Name()))
	guide.Say("A program started with `ip netns exec` sees that file in place of /etc/resolv.conf:")
	inside, err := guide.Look(ctx, nil, "ip", "netns", "exec", a.Name(), "cat", "/etc/resolv.conf")
	if err != nil {
		return err
	}
	if inside != file || !strings.Contains(file, "nameserver "+gw.String()) || !strings.Contains(file, "search lab.example") {
		return fmt.Errorf("/etc/resolv.conf inside a is not %s, naming %s:\n%s", path, gw, inside)
	}
	guide.OK("inside a, /etc/resolv.conf is %s: one name server, the gateway %s, and the host's search domain", path, gw)
	guide.Say("nsenter --net does not do this bind mount: a program entered that way\n" +
		"reads the host's /etc/resolv.conf. Use ip netns exec to see a sandbox's names.")
	if _, err := guide.Look(ctx, nil, "ip", "netns", "exec", a.Name(), "cat", "/etc/hosts"); err != nil {
		return err
	}
	guide.Say("/etc/hosts holds only a's own names: the others come from the name server.")

	guide.Step(4, "the embedded name server, on the gateway address in the host namespace")
	socks, err := guide.Look(ctx, hostNS, "ss", "-lnu", "sport", "=", "53")
	if err != nil {
		return err
	}
	if !strings.Contains(socks, gw.String()+":53") {
		return fmt.Errorf("nothing listens on %s:53 in the host namespace", gw)
	}
	guide.OK("a server listens on %s:53 (UDP, and TCP too) in the host namespace: every sandbox reaches it over its eth0", gw)

	guide.Step(5, "a resolves b by name: the C library, dig, and Go's own resolver")
	guide.Say("getent asks the C library, which reads /etc/resolv.conf as any program does:")
	out, err := guide.Look(ctx, nil, "ip", "netns", "exec", a.Name(), "getent", "hosts", "db")
	if err != nil || !strings.HasPrefix(out, epB.Addr(false).String()+" ") {
		return fmt.Errorf("getent hosts db in a: %q (%v), want %s", out, err, epB.Addr(false))
	}
	for _, name := range []string{"db", "postgres"} {
		out, err := guide.Look(ctx, nil, "ip", "netns", "exec", a.Name(), "dig", "+short", "+time=2", "+tries=2", name)
		if errors.Is(err, guide.ErrNotInstalled) {
			break
		}
		if err != nil || strings.TrimSpace(out) != epB.Addr(false).String() {
			return fmt.Errorf("dig %s from a: %q, want %s (%v)", name, out, epB.Addr(false), err)
		}
	}
	guide.Say("Go's pure resolver reads /etc/resolv.conf and sends its own queries. This\n" +
		"program was not started by `ip netns exec`, so it reads a's file itself and\n" +
		"sends the queries from a socket opened inside a:")
	for _, name := range []string{"db", "postgres", "b", "db.sandnet.internal"} {
		addrs, err := goLookup(a, path, name)
		if err != nil || len(addrs) != 1 || addrs[0] != epB.Addr(false).String() {
			return fmt.Errorf("Go resolver in a: %s = %v (%v), want %s", name, addrs, err, epB.Addr(false))
		}
		guide.Say("net.Resolver in a: %s = %s", name, addrs[0])
	}
	guide.OK("hostname, alias, sandbox ID and the full name under sandnet.internal all give %s", epB.Addr(false))

	guide.Step(6, "ping by name, the everyday check")
	guide.Look(ctx, nil, "ip", "netns", "exec", a.Name(), "ping", "-c", "1", "-W", "2", "db") // shown where installed
	if err := guide.Ping(ctx, a, epB.Addr(false).String(), true); err != nil {
		return fmt.Errorf("ping db from a: %w", err)
	}
	guide.OK("a pings db: the C library asked %s, as resolv.conf says, and got %s", gw, epB.Addr(false))

	guide.Step(7, "b detaches: its name vanishes")
	guide.Say("The server reads the network's sandboxes from the host's state directory,\n" +
		"so there is nothing to deregister: the name goes with the endpoint.")
	if err := host.Detach(ctx, epB); err != nil {
		return err
	}
	out, err = guide.Look(ctx, nil, "ip", "netns", "exec", a.Name(), "dig", "+time=2", "+tries=2", "db")
	if !errors.Is(err, guide.ErrNotInstalled) && !strings.Contains(out, "status: NXDOMAIN") {
		return fmt.Errorf("db after b detached: no NXDOMAIN:\n%s", out)
	}
	var dnsErr *net.DNSError
	if addrs, err := goLookup(a, path, "db.sandnet.internal"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		return fmt.Errorf("db after b detached: Go resolver says %v (%v), want no such host", addrs, err)
	}
	if _, err := os.Stat(filepath.Join(guide.EtcNetns, b.Name())); !os.IsNotExist(err) {
		return fmt.Errorf("%s/%s is still there after detach (%v)", guide.EtcNetns, b.Name(), err)
	}
	guide.OK("db is NXDOMAIN (no such name) now, and %s/%s is gone with b's endpoint", guide.EtcNetns, b.Name())

	if lab.Keep {
		guide.Say("\n-keep: a stays attached; its resolv.conf stays in %s/%s.\n"+
			"The name server stopped with this program: dig from a now times out.", guide.EtcNetns, a.Name())
		fmt.Println("\n05-dns: OK")
		return nil
	}
	guide.Step(8, "a detaches too, and the network goes")
	if err := host.Detach(ctx, epA); err != nil {
		return err
	}
	if err := host.RemoveNetwork(ctx, network.Name); err != nil {
		return err
	}
	fmt.Println("\n05-dns: OK")
	return nil
}

// goLookup resolves name with Go's pure resolver as a program inside sb
// would: the servers of resolv.conf (read from path), queried from a
// socket that belongs to sb.
func goLookup(sb *netns.NS, path, name string) ([]string, error) {
	rc, err := dns.ReadResolvConf(path)
	if err != nil {
		return nil, err
	}
	if len(rc.Nameservers) == 0 {
		return nil, fmt.Errorf("%s names no server", path)
	}
	server := netip.AddrPortFrom(rc.Nameservers[0], 53).String()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (c net.Conn, err error) {
		// The socket is created inside sb, whichever thread reads it later.
		err = sb.Do(func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, server)
			return err
		})
		return c, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.LookupHost(ctx, name)
}
