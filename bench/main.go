// Command bench measures what attaching and detaching sandboxes costs with
// sandnet, with the CNI reference plugins (bridge + host-local, + portmap)
// and with netavark, side by side, in one run, and next to the kernel's own
// floor (a bare veth creation and deletion). Run as root:
//
//	go run ./bench              # N = 10, 100, 1000; 0 and 1 published port; every tool installed; then -parallel
//	go run ./bench -quick       # N = 10, 100, for development (-parallel at N = 200)
//	go run ./bench -parallel    # only the concurrent attach/detach table (parallel.md)
//	go run ./bench -dns         # the name servers instead: sandnet, aardvark-dns, dnsmasq (dns.md)
//	go run ./bench -talk        # one big network: a fresh sandbox's first packets, flooding vs answering (talk.md)
//
// Everything happens in private namespaces: each tool and run gets its own
// lab namespace playing the host and N sandbox namespaces, made beforehand
// and not timed, and all removed at the end. The machine's own network is
// never touched. The peers are exec'd the way a runtime does (CNI: env and
// stdin per plugin of a conflist chain; netavark: setup/teardown with the
// network options on stdin), forked from a thread inside the lab namespace.
//
// It prints one table with each tool's p50 as a multiple of sandnet's, and
// writes bench.csv, bench.svg (p50 vs N per tool) and bench.md under -out;
// then the -parallel table (parallel.md, parallel.csv) unless
// -with-parallel=false. -dns writes dns.md and dns.csv.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	ns     []int
	ports  []int
	tools  []string
	out    string
	state  string
	settle time.Duration
}

// quickFlag (-quick) shortens every mode so a run fits in minutes.
var quickFlag = flag.Bool("quick", false, "a shorter run, for development: N = 10,100 (-parallel: N = 200; -dns: shorter loads)")

func parseFlags() (config, error) {
	var (
		c     config
		nFlag = flag.String("n", "10,100,1000", "numbers of sandboxes, comma-separated")
		pFlag = flag.String("ports", "0,1", "published ports per sandbox (0 and/or 1), comma-separated")
		tFlag = flag.String("tools", "sandnet,sandnet-cni,cni,netavark", "tools to measure: sandnet, sandnet-cni, cni, netavark (the kernel floors are always measured)")
	)
	flag.StringVar(&c.out, "out", "docs/bench", "directory for bench.csv, bench.svg and bench.md")
	flag.StringVar(&c.state, "state", "", "parent of the scratch dirs (state, leases); default: /dev/shm if it is tmpfs (as /run/sandnet should be), else $TMPDIR")
	flag.DurationVar(&c.settle, "settle", 2*time.Second, "pause per 1000 deleted namespaces before the next run (then, up to a minute more, until the kernel has torn the deleted namespaces down and the CPUs are mostly idle), so the kernel's cleanup does not weigh on it")
	flag.BoolVar(&cniMasq, "cni-ipmasq", false, "turn on the CNI bridge plugin's per-sandbox masquerade (iptables execs per sandbox)")
	flag.StringVar(&cniDir, "cni-path", cniDir, "directory of the CNI plugins")
	flag.StringVar(&sandnetCNI, "sandnet-cni", "", "sandnet's CNI plugin binary; default: built from ./cmd/sandnet-cni with go build")
	flag.StringVar(&traceDir, "trace", "", "write a Go execution trace of sandnet's first attach of each run to this directory (go tool trace; -pprof=syscall tells which system calls it waited in)")
	flag.StringVar(&profileDir, "cpuprofile", "", "write a CPU profile of sandnet's attach and of its detach loop per run to this directory (go tool pprof); with -dns, of each load on sandnet's name server (then run in the bench process)")
	flag.Parse()
	if *quickFlag {
		*nFlag = "10,100"
	}
	var err error
	if c.ns, err = ints(*nFlag, 1, 10000); err != nil {
		return c, fmt.Errorf("-n: %w", err)
	}
	if c.ports, err = ints(*pFlag, 0, 1); err != nil {
		return c, fmt.Errorf("-ports: %w", err)
	}
	for _, t := range strings.Split(*tFlag, ",") {
		switch t = strings.TrimSpace(t); t {
		case "sandnet":
			c.tools = append(c.tools, "sandnet", "sandnet-going")
		case "cni", "netavark", "sandnet-cni":
			c.tools = append(c.tools, t)
		case "":
		default:
			return c, fmt.Errorf("-tools: unknown tool %q (sandnet, sandnet-cni, cni, netavark)", t)
		}
	}
	c.tools = append(c.tools, "kernel", "kernel-lean")
	return c, nil
}

func ints(s string, lo, hi int) ([]int, error) {
	var v []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%q: want numbers from %d to %d", f, lo, hi)
		}
		v = append(v, n)
	}
	slices.Sort(v)
	return slices.Compact(v), nil
}

func run() error {
	c, err := parseFlags()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates network namespaces (everything stays inside them)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	growFDTable(4*slices.Max(c.ns) + 1024)

	base := c.state
	if base == "" {
		base = os.TempDir()
		if isTmpfs("/dev/shm") {
			base = "/dev/shm"
		}
	}
	scratch, err := os.MkdirTemp(base, "sandnet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)

	rep := &report{started: time.Now(), stateFS: fsType(scratch), kernel: kernelRelease(), loadStart: loadAvg()}
	var tools []tool
	for _, name := range c.tools {
		i := slices.IndexFunc(allTools, func(t tool) bool { return t.name == name })
		t := allTools[i]
		if why := t.missing(); why != "" {
			fmt.Printf("%s: skipped: %s\n", t.name, why)
			rep.missing = append(rep.missing, t.name+": "+why)
			continue
		}
		tools = append(tools, t)
	}
	fmt.Printf("state and scratch dirs on %s (%s); kernel %s; %d CPUs\n", scratch, rep.stateFS, rep.kernel, runtime.NumCPU())
	switch {
	case *parallelMode:
		return runParallel(ctx, scratch, c)
	case *dnsMode:
		return runDNS(ctx, scratch, c)
	case *talkMode:
		return runTalk(ctx, scratch, c)
	}

	for _, ports := range c.ports {
		for _, n := range c.ns {
			for _, t := range tools {
				if strings.HasPrefix(t.name, "kernel") && ports != c.ports[0] {
					continue // the floor does not depend on ports: measured once per N
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				r := measure(ctx, scratch, t, n, ports)
				fmt.Println(r.line())
				rep.results = append(rep.results, r)
				// Let the kernel finish tearing the deleted namespaces down.
				settle(ctx, c.settle*time.Duration(n)/1000)
			}
		}
	}
	rep.finished, rep.loadEnd = time.Now(), loadAvg()
	fmt.Println()
	fmt.Print(rep.table())
	if err := rep.write(c.out); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s, %s and %s\n", filepath.Join(c.out, "bench.md"), filepath.Join(c.out, "bench.csv"), filepath.Join(c.out, "bench.svg"))
	if *withParallel && slices.Contains(c.tools, "sandnet") {
		fmt.Println()
		return runParallel(ctx, scratch, c)
	}
	return nil
}

// measure runs one tool over n fresh sandboxes: attach each, then detach
// each, timing every call.
func measure(ctx context.Context, scratch string, t tool, n, ports int) *result {
	r := &result{tool: t.name, n: n, ports: ports}
	l, err := newLab(ctx, scratch, t.name, n, ports > 0)
	if err != nil {
		r.note = "lab: " + err.Error()
		return r
	}
	defer l.close(context.WithoutCancel(ctx))
	s, err := t.start(ctx, l)
	if err != nil {
		r.note = "start: " + err.Error()
		return r
	}
	attached := 0
	defer func() {
		if r.note != "" { // undo what a failed run left, untimed
			for i := range attached {
				s.detach(context.WithoutCancel(ctx), i)
			}
		}
	}()
	stopProfile := startProfile(t.name, "attach", n, ports)
	start := time.Now()
	for i := range n {
		stopTrace := func() {}
		if i == 0 {
			stopTrace = startTrace(t.name, n, ports)
		}
		t0 := time.Now()
		err := s.attach(ctx, i)
		d := time.Since(t0)
		stopTrace()
		if err != nil {
			stopProfile()
			r.note = fmt.Sprintf("attach %d: %v", i, err)
			r.skipped = errors.Is(err, errUnsupported)
			return r
		}
		r.attach = append(r.attach, d)
		attached++
	}
	r.attachTotal = time.Since(start)
	stopProfile()
	r.maxRSS = maxRSS()
	stopProfile = startProfile(t.name, "detach", n, ports)
	start = time.Now()
	for i := range n {
		t0 := time.Now()
		if err := s.detach(ctx, i); err != nil {
			stopProfile()
			r.note = fmt.Sprintf("detach %d: %v", i, err)
			attached = 0
			return r
		}
		r.detach = append(r.detach, time.Since(t0))
	}
	r.detachTotal = time.Since(start)
	stopProfile()
	attached = 0
	note, err := s.finish(ctx)
	r.note = strings.TrimSpace(note)
	if err != nil {
		r.note = strings.TrimSpace(r.note + " finish: " + err.Error())
	}
	r.ok = true
	return r
}

// profileDir, when set (-cpuprofile), receives a CPU profile of sandnet's
// timed loops: sandnet-attach-p1-n1000.pprof and so on.
var profileDir string

// startProfile starts the CPU profile of one timed loop of tool sandnet, if
// asked for; the returned function stops it.
func startProfile(tool, op string, n, ports int) (stop func()) {
	if profileDir == "" || tool != "sandnet" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(profileDir, fmt.Sprintf("%s-%s-p%d-n%d.pprof", tool, op, ports, n)))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: cpu profile:", err)
		return func() {}
	}
	return sync.OnceFunc(func() {
		pprof.StopCPUProfile()
		f.Close()
	})
}

// traceDir, when set (-trace), receives an execution trace of the first
// attach of each of sandnet's runs, the new network's: what that attach
// waited for, system call by system call.
var traceDir string

// startTrace starts the execution trace of tool sandnet's first attach, if
// asked for; the returned function stops it.
func startTrace(tool string, n, ports int) (stop func()) {
	if traceDir == "" || tool != "sandnet" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(traceDir, fmt.Sprintf("%s-first-attach-p%d-n%d.trace", tool, ports, n)))
	if err == nil {
		err = trace.Start(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: trace:", err)
		return func() {}
	}
	return func() {
		trace.Stop()
		f.Close()
	}
}

// maxRSS is the process's peak resident set so far, in bytes.
func maxRSS() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

func isTmpfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

func fsType(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	}
	return fmt.Sprintf("fs 0x%x", st.Type)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// growFDTable makes the kernel size this process's descriptor table for n
// descriptors now, before anything is measured. A lab holds a descriptor
// per sandbox namespace, so the table would otherwise grow during a run,
// in whichever call first opens a descriptor past a power of two. With
// threads sharing the table the kernel then waits for an RCU grace period
// (expand_fdtable): measured, 17.6 ms inside the first attach at N=1000,
// which is the bench's own descriptors and not the attach's work (the
// peers, exec'd per call, never hold them). The table never shrinks.
func growFDTable(n int) {
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) != nil || rl.Cur < 64 {
		return
	}
	fd := int(min(uint64(n), rl.Cur-1))
	if unix.Dup3(0, fd, unix.O_CLOEXEC) == nil {
		unix.Close(fd)
	}
}
