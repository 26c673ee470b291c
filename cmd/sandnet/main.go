// Command sandnet networks Linux sandboxes (network namespaces) the way
// Docker does, and explains and troubleshoots what it did.
//
//	sandnet ns add|del|ls|exec NAME [-- CMD...]
//	sandnet net create NAME [--driver D] [--subnet CIDR] ... | net rm NAME | net ls
//	sandnet attach NS --net NAME [--ip IP] [-p SPEC]... [--name N] [--alias A]...
//	sandnet detach NS --net NAME
//	sandnet inspect NS [--graph]     sandnet doctor NS     sandnet graph     sandnet gc
//	sandnet run --net NAME [--name N] [--alias A]... [-p SPEC]... [--ip IP] [--keep] -- CMD [ARGS...]
//
// NS is a name under /run/netns, a path, or pid:PID. Global flags:
// --host-ns NAME (a namespace that plays the host: a safe lab),
// --state-dir DIR, --explain (print the equivalent ip/iptables commands),
// --json. Run `sandnet CMD --help` for examples. Needs root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the operation failed, or doctor found a failing check
	exitUsage = 2 // bad command line
)

// app holds the global flags and the output streams.
type app struct {
	stdout, stderr io.Writer
	hostNS         string
	stateDir       string
	firewall       string
	explain        bool
	json           bool
	help           map[*flag.FlagSet]func() // each subcommand's --help text
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError carries a status other than 1 without a message (doctor, ns exec).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const topUsage = `sandnet networks Linux sandboxes (network namespaces) the way Docker does.

Usage: sandnet [global flags] COMMAND [ARGS] [flags]

Commands:
  ns add|del|ls|exec   named namespaces (like ip netns)
  net create|rm|ls     networks (bridge, macvlan, overlay, host, none)
  attach NS --net N    connect a sandbox to a network
  detach NS --net N    disconnect it
  inspect NS           everything about a sandbox's network (--json, --graph)
  doctor NS            the troubleshooting checklist (exit 0 only if nothing fails)
  graph                the topology as Graphviz DOT
  gc                   remove what crashed processes left
  repair NS            put back what is missing for a sandbox (rules, veths...)
  reconcile            repair every network and endpoint (after iptables -F)
  run --net N -- CMD   run CMD in a throwaway sandbox on network N (docker run --rm)

NS is a name from /run/netns, a path (/proc/PID/ns/net), or pid:PID.

Global flags (before or after the command):
  --host-ns NAME   act with namespace NAME as the host (a safe lab)
  --state-dir DIR  where networks and endpoints are recorded
                   (default /run/sandnet, /run/sandnet/netns/NAME with --host-ns)
  --explain        print the equivalent ip/iptables command before each step
  --firewall NAME  firewall backend: iptables, nftables or auto (default: auto,
                   nftables where the kernel has it; or $SANDNET_FIREWALL)
  --json           machine-readable output

Run 'sandnet COMMAND --help' for examples.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("sandnet", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.globals(fs)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, topUsage)
		return exitOK
	}
	if err == nil && fs.NArg() == 0 {
		err = usagef("no command given (see sandnet --help)")
	}
	if err == nil {
		err = a.dispatch(ctx, fs.Arg(0), fs.Args()[1:])
	}
	return a.report(err)
}

func (a *app) report(err error) int {
	var ec exitCode
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ec):
		return int(ec)
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "sandnet: %s\n", oneLine(err.Error()))
		return exitUsage
	default:
		fmt.Fprintf(a.stderr, "sandnet: %s\n", oneLine(err.Error()))
		return exitError
	}
}

// oneLine keeps an error on one line (joined errors carry newlines).
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func (a *app) globals(fs *flag.FlagSet) {
	fs.StringVar(&a.hostNS, "host-ns", a.hostNS, "act with namespace `NAME` (name, path or pid:PID) as the host")
	fs.StringVar(&a.stateDir, "state-dir", a.stateDir, "state `DIR` (default /run/sandnet, or /run/sandnet/netns/NAME with --host-ns)")
	fs.BoolVar(&a.explain, "explain", a.explain, "print the equivalent ip/iptables command before each step")
	if a.firewall == "" {
		a.firewall = os.Getenv("SANDNET_FIREWALL")
	}
	fs.StringVar(&a.firewall, "firewall", a.firewall, "firewall backend `NAME`: iptables, nftables or auto")
	fs.BoolVar(&a.json, "json", a.json, "print JSON")
}

func (a *app) dispatch(ctx context.Context, cmd string, args []string) error {
	if a.explain {
		out := a.stdout
		if a.json {
			out = a.stderr
		}
		ctx = explain.With(ctx, func(c string) { fmt.Fprintln(out, "$", c) })
	}
	switch cmd {
	case "ns":
		return a.ns(ctx, args)
	case "net", "network":
		return a.net(ctx, args)
	case "attach":
		return a.attach(ctx, args)
	case "detach":
		return a.detach(ctx, args)
	case "inspect":
		return a.inspect(ctx, args)
	case "doctor":
		return a.doctor(ctx, args)
	case "graph":
		return a.graph(ctx, args)
	case "gc":
		return a.gc(ctx, args)
	case "repair":
		return a.repair(ctx, args)
	case "reconcile":
		return a.reconcile(ctx, args)
	case "run":
		return a.run(ctx, args)
	case "help":
		fmt.Fprint(a.stdout, topUsage)
		return nil
	}
	return usagef("unknown command %q (see sandnet --help)", cmd)
}

// host opens the Host the global flags describe.
func (a *app) host(ctx context.Context) (*sandnet.Host, error) {
	return sandnet.NewHost(ctx, sandnet.HostConfig{NetNS: a.hostNS, StateDir: a.stateDir, FirewallBackend: a.firewall})
}

// touchingHost is host for the commands that touch the networks: it also
// starts again a name server that endpoints need and that is down (the DNS
// helper was killed), saying so on stderr; that never fails the command.
func (a *app) touchingHost(ctx context.Context) (*sandnet.Host, error) {
	h, err := a.host(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.EnsureNameServers(ctx); err != nil {
		fmt.Fprintf(a.stderr, "sandnet: warning: %v\n", err)
	}
	return h, nil
}

// sandboxAndHost opens the sandbox namespace spec (a name, path or pid:PID)
// and the Host; closeBoth closes them again.
func (a *app) sandboxAndHost(ctx context.Context, spec string) (sb *netns.NS, h *sandnet.Host, closeBoth func(), err error) {
	sb, err = netns.Open(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	h, err = a.host(ctx)
	if err != nil {
		sb.Close()
		return nil, nil, nil, err
	}
	return sb, h, func() { h.Close(); sb.Close() }, nil
}
