// 01-namespaces: what a network namespace is, with the four `ip netns`
// commands: add, list, exec, del. Run as root:
//
//	go run ./examples/01-namespaces [-keep]
//
// A network namespace is a private copy of the network stack: its own
// interfaces, addresses, routes, firewall rules and sockets. A container is,
// for the network, just a process living in one. Nothing here touches the
// machine's own network: the new namespace starts empty and is removed at
// the end (also on Ctrl-C; -keep leaves it for you to explore).
package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/iface"
	"github.com/sandnet/sandnet/internal/tools"
	"github.com/sandnet/sandnet/netns"
)

func main() { guide.Main("ex01", run) }

func run(ctx context.Context, lab *guide.Lab) error {
	guide.Step(1, "ip netns add: make a new network namespace")
	guide.Say("The kernel creates a fresh network stack; `ip netns add` pins it as a file\n" +
		"under /run/netns so it outlives the process that made it and has a name.")
	name := lab.Name("demo")
	ns, err := netns.Create(ctx, name)
	if err != nil {
		return err
	}
	lab.Own(name)
	defer ns.Close()
	// A namespace is identified by an inode number; ours differs from the
	// one this program runs in.
	me, err := netns.Current()
	if err != nil {
		return err
	}
	defer me.Close()
	guide.Say("this program runs in net:[%d]; the new namespace is net:[%d]", me.Inode(), ns.Inode())
	if ns.Equal(me) {
		return fmt.Errorf("the new namespace is the program's own")
	}
	guide.OK("a different namespace: another inode")

	guide.Step(2, "ip netns list: named namespaces are files in %s", netns.Dir)
	names, err := netns.List()
	if err != nil {
		return err
	}
	out, err := guide.Look(ctx, nil, "ip", "netns", "list")
	if err != nil {
		return err
	}
	if !slices.Contains(names, name) || !strings.Contains(out, name) {
		return fmt.Errorf("%s is not listed", name)
	}
	guide.OK("netns.List() and `ip netns list` both show %s", name)

	guide.Step(3, "a new namespace holds only lo, and lo is down")
	guide.Say("None of the machine's interfaces are visible inside: isolation is the point.")
	// Do runs Go code with its view of the network inside the namespace.
	var seen []net.Interface
	if err := ns.Do(func() (err error) { seen, err = net.Interfaces(); return err }); err != nil {
		return err
	}
	if _, err := guide.Look(ctx, ns, "ip", "link"); err != nil {
		return err
	}
	if len(seen) != 1 || seen[0].Name != "lo" || seen[0].Flags&net.FlagUp != 0 {
		return fmt.Errorf("expected only lo, down; saw %v", seen)
	}
	guide.OK("Go's net.Interfaces() inside sees %d interface: %s, down", len(seen), seen[0].Name)

	guide.Step(4, "ip netns exec: run a program inside the namespace")
	guide.Say("ns.Command is `ip netns exec`: the program runs with its network inside.\n" +
		"With lo down even 127.0.0.1 is unreachable: there is no route at all.")
	if _, err := inside(ctx, ns, []string{"ip", "-br", "addr"}); err != nil {
		return err
	}
	guide.Say("ping (shown where it is installed) and this program's own ICMP echo, from a\n" +
		"socket opened inside the namespace, agree:")
	loopback := netip.MustParseAddr("127.0.0.1")
	if tools.Installed("ping") {
		inside(ctx, ns, []string{"ping", "-c", "1", "-W", "1", "127.0.0.1"})
	} else {
		guide.Say("(%s: its output is not shown)", tools.NotFound("ping"))
	}
	if err := guide.Ping(ctx, ns, loopback.String(), false); err != nil {
		return fmt.Errorf("ping 127.0.0.1 with lo down: %w", err)
	}
	guide.OK("ping 127.0.0.1 fails: nothing is up in here")
	guide.Say("Bring lo up, as every container runtime does first:")
	if err := iface.Up(ctx, ns, "lo"); err != nil {
		return err
	}
	if tools.Installed("ping") {
		inside(ctx, ns, []string{"ping", "-c", "1", "-W", "1", "127.0.0.1"})
	}
	if err := guide.Ping(ctx, ns, loopback.String(), true); err != nil {
		return fmt.Errorf("ping 127.0.0.1 with lo up: %w", err)
	}
	guide.OK("ping 127.0.0.1 answers inside the namespace")

	guide.Step(5, "ip netns del: remove the name")
	guide.Say("Deleting unpins the file; the namespace itself goes away with its last\n" +
		"user (a process inside, or an open handle like the one this program holds).")
	if lab.Keep {
		guide.Say("(-keep: not deleting %s)", name)
		return nil
	}
	if err := netns.Delete(ctx, name); err != nil {
		return err
	}
	names, err = netns.List()
	if err != nil {
		return err
	}
	if slices.Contains(names, name) {
		return fmt.Errorf("%s still listed after delete", name)
	}
	guide.OK("%s is no longer listed", name)
	fmt.Println("\n01-namespaces: OK")
	return nil
}

// inside runs args in ns with ns.Command and prints it as `ip netns exec`
// would be typed, with its output.
func inside(ctx context.Context, ns *netns.NS, args []string) (string, error) {
	fmt.Println("    >", ns.Shell(guide.Quote(args)))
	out, err := ns.Command(ctx, args[0], args[1:]...).CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("      " + l)
	}
	return string(out), err
}
