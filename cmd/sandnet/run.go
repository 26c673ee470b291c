package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/netns"
)

var runCmd = command{
	usage: "run --net NAME [--name N] [--alias A]... [-p SPEC]... [--ip IP] [--keep] -- CMD [ARGS...]",
	summary: "Run CMD in a throwaway sandbox on network NAME, as docker run --rm --network NAME does, without an image: " +
		"a new namespace (named N, else run-RANDOM), attached (address, default route, DNS names, published ports), " +
		"CMD inside as ns exec runs it (stdin, stdout, stderr passed through, signals forwarded). " +
		"When CMD exits, or on SIGINT/SIGTERM, the sandbox is detached and its namespace deleted; the exit status is CMD's. " +
		"--keep leaves the sandbox attached.",
	max: 0, dash: true,
	examples: `  sandnet --host-ns lab run --net n1 -- ip -br addr
  sandnet --host-ns lab run --net n1 -- getent hosts web     # the network's names resolve inside
  sandnet --host-ns lab run --net n1 --name api --alias www -p 127.0.0.1:8080:80 -- getent hosts www
`,
}

func (a *app) run(ctx context.Context, args []string) error {
	fs := a.flags(runCmd)
	var (
		network, ip, name string
		ports, aliases    strList
		keep              bool
	)
	fs.StringVar(&network, "net", "", "the network `NAME` to join (required; create it with sandnet net create)")
	fs.StringVar(&name, "name", "", "the sandbox's namespace and DNS name `N` (default: run-RANDOM, which resolves on the network as well)")
	fs.Var(&aliases, "alias", "another DNS name `A` (repeat)")
	fs.Var(&ports, "p", "publish a port, Docker's `SPEC`: [HOSTIP:]HOSTPORT:PORT[/tcp|udp] (repeat)")
	fs.StringVar(&ip, "ip", "", "a static `IP` from the network's subnet")
	fs.BoolVar(&keep, "keep", false, "leave the sandbox attached when CMD exits (remove it with detach and ns del)")
	_, rest, err := a.parse(fs, runCmd, args)
	if err != nil {
		return err
	}
	if network == "" {
		return usagef("run: --net NAME is required")
	}
	if len(rest) == 0 {
		return usagef("usage: sandnet %s: give the command after --", runCmd.usage)
	}
	opts, err := attachOptions(ip, name, aliases, ports)
	if err != nil {
		return err
	}
	nsName := name
	if nsName == "" {
		b := make([]byte, 4)
		rand.Read(b)
		nsName = "run-" + hex.EncodeToString(b)
	}
	h, err := a.host(ctx)
	if err != nil {
		return err
	}
	defer h.Close()
	// From here on, a signal is forwarded to CMD (or, before it runs, ends
	// the run); the sandbox is removed in every case.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	ns, err := netns.Create(ctx, nsName)
	if err != nil {
		return err
	}
	cleanup := context.WithoutCancel(ctx)
	defer func() {
		ns.Close()
		if !keep {
			if err := netns.Delete(cleanup, nsName); err != nil {
				fmt.Fprintf(a.stderr, "sandnet: %s\n", oneLine(err.Error()))
			}
		}
	}()
	ep, err := h.AttachNS(ctx, ns, sandnet.Network{Name: network}, opts)
	if err != nil {
		keep = false
		return err
	}
	defer func() {
		if keep {
			fmt.Fprintf(a.stderr, "sandnet: kept sandbox %s on %s (%s); remove it with: sandnet detach %s --net %s; sandnet ns del %s\n",
				nsName, network, prefixes(ep.Addresses...), nsName, network, nsName)
			return
		}
		if err := h.Detach(cleanup, ep); err != nil {
			fmt.Fprintf(a.stderr, "sandnet: %s\n", oneLine(err.Error()))
		}
	}()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run: interrupted before %s started", rest[0])
	}
	return a.startInside(ns, rest, sigs)
}

// runInside runs argv inside ns as ns exec and run do (NS.Start: the
// sandbox's /etc/netns files over /etc, its own /sys), stdio passed
// through, SIGINT, SIGTERM, SIGHUP and SIGQUIT forwarded; it returns CMD's
// exit status as an exitCode.
func (a *app) runInside(ns *netns.NS, argv []string) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	return a.startInside(ns, argv, sigs)
}

func (a *app) startInside(ns *netns.NS, argv []string, sigs chan os.Signal) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, a.stdout, a.stderr
	if err := ns.Start(cmd); err != nil {
		return fmt.Errorf("running %s in %s: %w", argv[0], ns, err)
	}
	done := make(chan struct{})
	defer close(done)
	// A Ctrl-C at a terminal reaches CMD directly (the whole foreground
	// process group gets it); forwarding it too would deliver it twice.
	tty := isTerminal(os.Stdin)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGINT && tty {
					continue
				}
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitCode(128 + int(ws.Signal()))
		}
		return exitCode(ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("running %s in %s: %w", argv[0], ns, err)
	}
	return nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
