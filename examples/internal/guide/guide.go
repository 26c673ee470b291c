// Package guide is the frame shared by the numbered examples: a lab of
// namespaces that is removed at the end (also on Ctrl-C), and printing that
// reads like the guide, plus the two proofs several examples share (Ping,
// Echo). The networking itself each example does with the public packages,
// so it can be read top to bottom.
//
// Output conventions, which examples_test.go relies on:
//
//	== N. title          a step
//	   text              what it does and why
//	    $ cmd            a command that does what the code just did, reported
//	                     by the library's explain hook: pasted into a shell in
//	                     a fresh lab, these rebuild the same kernel state
//	    > cmd            a command run to look at the kernel (changes nothing),
//	      output         followed by its output
//	   ok: text          the proof that the step worked
//	lab kept: NS...      with -keep: the namespaces left for inspection
package guide

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/tools"
	"github.com/sandnet/sandnet/netns"
)

// Lab is the set of namespaces an example builds, and what to undo at the end.
type Lab struct {
	// Keep leaves the namespaces in place at the end (flag -keep).
	Keep bool

	tag      string
	names    []string
	cleanups []func(context.Context)
}

// Main runs an example: it parses the flags, makes a context that is
// cancelled on Ctrl-C and carries an explain hook printing "    $ CMD", runs
// fn, and removes the lab however fn ended. tag starts every namespace name
// (e.g. "ex02"), so a leftover is easy to recognise.
func Main(tag string, fn func(ctx context.Context, lab *Lab) error) {
	lab := &Lab{tag: tag}
	flag.BoolVar(&lab.Keep, "keep", false, "leave the lab's namespaces in place for inspection (delete them with ip netns del)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Every library step reports the command a person would type for it.
	ctx = explain.With(ctx, func(cmd string) { fmt.Println("    $", cmd) })
	err, panicked := guard(ctx, lab, fn)
	stop()
	// A second Ctrl-C must not cut the cleanup short.
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	lab.close(context.WithoutCancel(ctx))
	if panicked != nil {
		fmt.Fprintf(os.Stderr, "%s: panic (the lab was removed): %v", tag, panicked)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", tag, err)
		os.Exit(1)
	}
}

// guard runs fn and turns a panic into a value, so the lab is removed
// however fn ends. A deliberate failure (FailEnv) at a step comes back as
// the error a failed proof returns.
func guard(ctx context.Context, lab *Lab, fn func(ctx context.Context, lab *Lab) error) (err error, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			if f, ok := p.(failure); ok && f.mode == "error" {
				err = f
				return
			}
			panicked = fmt.Sprintf("%v\n%s", p, debug.Stack())
		}
	}()
	return fn(ctx, lab), nil
}

// FailEnv makes an example fail on purpose when it starts step N, to test
// that its lab (namespaces and their /etc/netns files) is removed on every
// failure path: "error:N" ends it as a failed proof does, "panic:N" panics.
const FailEnv = "SANDNET_GUIDE_FAIL"

type failure struct {
	mode string
	step int
}

func (f failure) Error() string {
	return fmt.Sprintf("failing on purpose at step %d (%s=%s:%d)", f.step, FailEnv, f.mode, f.step)
}

// failAt panics with a failure if FailEnv asks for one at step n.
func failAt(n int) {
	mode, step, ok := strings.Cut(os.Getenv(FailEnv), ":")
	if ok && step == strconv.Itoa(n) && (mode == "error" || mode == "panic") {
		panic(failure{mode: mode, step: n})
	}
}

// Name is the name of the lab namespace called short: "TAG-SHORT-PID", so
// two runs at once do not collide.
func (l *Lab) Name(short string) string {
	return fmt.Sprintf("%s-%s-%d", l.tag, short, os.Getpid())
}

// NewNS creates the lab namespace called short (ip netns add) and removes it
// at the end.
func (l *Lab) NewNS(ctx context.Context, short string) (*netns.NS, error) {
	name := l.Name(short)
	ns, err := netns.Create(ctx, name)
	if err != nil {
		return nil, err
	}
	l.Own(name)
	l.Defer(func(context.Context) { ns.Close() })
	return ns, nil
}

// Own registers a namespace the example created itself, to delete at the end.
func (l *Lab) Own(name string) { l.names = append(l.names, name) }

// Defer registers fn to run at the end, before the namespaces are deleted,
// last registered first.
func (l *Lab) Defer(fn func(context.Context)) { l.cleanups = append(l.cleanups, fn) }

func (l *Lab) close(ctx context.Context) {
	for i := len(l.cleanups) - 1; i >= 0; i-- {
		l.cleanups[i](ctx)
	}
	if len(l.names) == 0 {
		return
	}
	if l.Keep {
		fmt.Println("\nlab kept:", strings.Join(l.names, " "))
		return
	}
	present, _ := netns.List()
	fmt.Println("\n== cleaning up: deleting the lab's namespaces (what is inside them goes with them)")
	for _, n := range l.names {
		// A sandbox's resolv.conf and hosts live outside the namespace, in
		// /etc/netns/NAME (see 05-dns): Detach removes them, but an
		// interrupted run may not have got that far.
		os.RemoveAll(filepath.Join(EtcNetns, n))
		os.RemoveAll(filepath.Join(dns.NetnsHomeDir(), n)) // where the link points
		if !slices.Contains(present, n) {
			continue // the example deleted it already
		}
		if err := netns.Delete(ctx, n); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}
}

// EtcNetns is where `ip netns exec NAME` finds the files it bind-mounts
// over /etc (resolv.conf, hosts) for namespace NAME.
const EtcNetns = "/etc/netns"

// Step starts a step of the guide.
func Step(n int, format string, args ...any) {
	fmt.Printf("\n== %d. %s\n", n, fmt.Sprintf(format, args...))
	failAt(n)
}

// Say prints what a step does and why.
func Say(format string, args ...any) {
	for _, line := range strings.Split(fmt.Sprintf(format, args...), "\n") {
		fmt.Println("   " + line)
	}
}

// OK prints the proof that a step worked.
func OK(format string, args ...any) {
	fmt.Println("   ok: " + fmt.Sprintf(format, args...))
}

// Look runs a command that only reads kernel state inside ns (nil: the
// program's own namespace) and prints it, as the person would type it, with
// its output. It returns the output and the command's error. When the
// program is not installed (a new machine has no ping, dig, iptables, nft,
// conntrack), it prints one line saying how to install it and returns an
// error that is ErrNotInstalled: the examples prove their steps in-process
// and show such a tool's output only where it is there.
func Look(ctx context.Context, ns *netns.NS, name string, args ...string) (string, error) {
	line := Quote(append([]string{name}, args...))
	var cmd *exec.Cmd
	if ns != nil {
		line = ns.Shell(line)
		cmd = ns.Command(ctx, name, args...)
	} else {
		cmd = exec.CommandContext(ctx, name, args...)
	}
	fmt.Println("    >", line)
	for _, prog := range []string{name, wrapped(name, args)} {
		if prog != "" && !tools.Installed(prog) {
			fmt.Printf("      (%s: not shown here)\n", tools.NotFound(prog))
			return "", fmt.Errorf("%s: %w", prog, ErrNotInstalled)
		}
	}
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("      " + l)
	}
	return string(out), err
}

// ErrNotInstalled is Look's error for a program that is not installed.
var ErrNotInstalled = errors.New("not installed")

// wrapped is the program `ip netns exec NS PROG ...` runs, else "".
func wrapped(name string, args []string) string {
	if name == "ip" && len(args) >= 4 && args[0] == "netns" && args[1] == "exec" {
		return args[3]
	}
	return ""
}

// Run runs a command that changes the kernel inside ns, the way a person
// would at a root shell (for the faults of 09-troubleshoot and the lab's own
// wiring where no library call does it). The explain hook reports it first,
// like every library step, so it is one of the "$" lines a replay runs.
func Run(ctx context.Context, ns *netns.NS, name string, args ...string) error {
	line := Quote(append([]string{name}, args...))
	explain.Say(ctx, "%s", ns.Shell(line))
	out, err := ns.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", ns.Shell(line), err, out)
	}
	return nil
}

// Quote joins args into a line a shell reads back as the same args.
func Quote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+%") == "" {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
