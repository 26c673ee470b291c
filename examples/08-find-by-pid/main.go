// 08-find-by-pid: find a container's network namespace from its process,
// and step inside it, the way you debug a container that has no tools.
// Run as root:
//
//	go run ./examples/08-find-by-pid [-keep]
//
// Docker does not name its namespaces under /run/netns, so `ip netns` does
// not list them. What you always have is a process: every process has a
// network namespace, and /proc/PID/ns/net is a handle to it. So the guide's
// recipe is:
//
//	PID=$(docker inspect -f '{{.State.Pid}}' web)
//	ls -l /proc/$PID/ns/net           # net:[INODE] identifies the namespace
//	nsenter -t $PID -n ip addr        # run the host's ip inside it
//
// Here a sandbox is attached to a bridge network in a private lab (as
// `docker run` would), a process is started inside it, and the recipe is
// followed from the PID alone.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/examples/internal/guide"
	"github.com/sandnet/sandnet/netns"
)

func main() { guide.Main("ex08", run) }

func run(ctx context.Context, lab *guide.Lab) error {
	guide.Step(1, "\"docker run\": a sandbox \"web\" on a bridge network, in a lab host")
	hostNS, err := lab.NewNS(ctx, "host")
	if err != nil {
		return err
	}
	web, err := lab.NewNS(ctx, "web")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sandnet-ex08-")
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { os.RemoveAll(dir) })
	host, err := sandnet.NewHostNS(hostNS, sandnet.HostConfig{StateDir: dir})
	if err != nil {
		return err
	}
	lab.Defer(func(context.Context) { host.Close() })
	ep, err := host.AttachNS(ctx, web, sandnet.Network{Name: "ex08", Subnet: netip.MustParsePrefix("10.80.0.0/24")}, sandnet.AttachOptions{SandboxID: "web"})
	if err != nil {
		return err
	}
	guide.Say("web has eth0 %s", ep.Addresses[0])

	guide.Step(2, "a process inside the sandbox (the container's main process)")
	cmd := web.Command(ctx, "sleep", "600")
	fmt.Println("    >", web.Shell("sleep 600"), "&")
	if err := cmd.Start(); err != nil {
		return err
	}
	lab.Defer(func(context.Context) { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	// nsenter enters the namespace and then becomes sleep (exec): same PID.
	// Wait until it has entered.
	if err := waitInside(ctx, pid, web, 5*time.Second); err != nil {
		return err
	}

	guide.Step(3, "docker inspect -f '{{.State.Pid}}' web  ->  %d", pid)
	guide.Say("From here on only the PID is used, as with a real container.")
	nsFile := fmt.Sprintf("/proc/%d/ns/net", pid)
	if _, err := guide.Look(ctx, nil, "ls", "-l", nsFile); err != nil {
		return err
	}
	link, err := os.Readlink(nsFile)
	if err != nil {
		return err
	}
	guide.Say("%s is a link to %s: the namespace's inode number. Two processes in\n"+
		"the same namespace show the same number; this program's own differs:", nsFile, link)
	if _, err := guide.Look(ctx, nil, "ls", "-l", "/proc/self/ns/net"); err != nil {
		return err
	}

	guide.Step(4, "open the namespace from the PID: netns.Open(\"pid:%d\")", pid)
	ns, err := netns.Open(fmt.Sprintf("pid:%d", pid))
	if err != nil {
		return err
	}
	defer ns.Close()
	if want := fmt.Sprintf("net:[%d]", ns.Inode()); link != want || !ns.Equal(web) {
		return fmt.Errorf("the PID's namespace %s is not web's net:[%d]", link, web.Inode())
	}
	guide.OK("it is %s, the very namespace the sandbox was attached in", link)
	guide.Say("ip can name it too, because this one happens to be pinned under /run/netns:")
	name, err := guide.Look(ctx, nil, "ip", "netns", "identify", fmt.Sprint(pid))
	if err != nil || strings.TrimSpace(name) != web.Name() {
		return fmt.Errorf("ip netns identify %d = %q (%v), want %s", pid, name, err, web.Name())
	}
	guide.OK("ip netns identify names it %s", web.Name())

	guide.Step(5, "enter it, in Go: Do runs code inside the namespace")
	var addrs []net.Addr
	if err := ns.Do(func() error {
		eth0, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		addrs, err = eth0.Addrs()
		return err
	}); err != nil {
		return err
	}
	guide.Say("net.InterfaceByName(\"eth0\").Addrs() inside: %v", addrs)
	if !slices.ContainsFunc(addrs, func(a net.Addr) bool { return a.String() == ep.Addresses[0].String() }) {
		return fmt.Errorf("eth0 inside has %v, want %s", addrs, ep.Addresses[0])
	}
	guide.OK("eth0 carries %s, the address Attach gave web", ep.Addresses[0])

	guide.Step(6, "enter it with nsenter: the host's ip, run inside")
	out, err := guide.Look(ctx, ns, "ip", "addr")
	if err != nil {
		return err
	}
	line := ns.Shell("ip addr")
	guide.Say("The same line pasted into a shell:")
	fmt.Println("    > sh -c", guide.Quote([]string{line}))
	pasted, err := exec.CommandContext(ctx, "sh", "-c", line).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", line, err, pasted)
	}
	if a, b := inets(out), inets(string(pasted)); len(a) == 0 || !slices.Equal(a, b) {
		return fmt.Errorf("ns.Command saw %v, the shell %v", a, b)
	}
	guide.OK("both show %s", strings.Join(inets(out), ", "))

	if lab.Keep {
		return nil
	}
	guide.Step(7, "\"docker rm\": detach web and remove the network")
	if err := host.Detach(ctx, ep); err != nil {
		return err
	}
	if err := host.RemoveNetwork(ctx, "ex08"); err != nil {
		return err
	}
	fmt.Println("\n08-find-by-pid: OK")
	return nil
}

// waitInside polls until process pid is in namespace want.
func waitInside(ctx context.Context, pid int, want *netns.NS, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ns, err := netns.OpenPID(pid)
		if err == nil {
			same := ns.Equal(want)
			ns.Close()
			if same {
				return nil
			}
		} else if !errors.Is(err, netns.ErrNotFound) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d never entered %s", pid, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inets returns the addresses in `ip addr` output.
func inets(out string) []string {
	var addrs []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && (f[0] == "inet" || f[0] == "inet6") {
			addrs = append(addrs, f[1])
		}
	}
	return addrs
}
