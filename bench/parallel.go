package main

// The -parallel mode: N sandboxes with one published port each, attached
// (then detached) sequentially, by several goroutines of one process, and
// by several processes sharing the state dir, each over a fresh lab. It
// reports wall time and sandboxes per second next to the sequential
// figure, and checks what concurrency could break: every sandbox got its
// own address and MAC, and every published port is in the firewall,
// pointing at its sandbox.

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink/nl"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/netns"
)

var (
	parallelMode  = flag.Bool("parallel", false, "measure concurrent attach/detach instead: N sandboxes with a port each, sequential vs -goroutines in one process vs -procs processes (N from -n, default 1000)")
	parGoroutines = flag.Int("goroutines", 8, "-parallel: goroutines of one process")
	parProcs      = flag.Int("procs", 4, "-parallel: processes sharing the state dir")
	withParallel  = flag.Bool("with-parallel", true, "after the attach/detach table, run the -parallel mode too")
)

// envParallelWorker makes the bench binary a worker of the -parallel mode:
// it reads its job from stdin and reports on stdout.
const envParallelWorker = "SANDNET_BENCH_WORKER"

func init() {
	if os.Getenv(envParallelWorker) != "" {
		if err := parallelWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// parRun is one way of attaching the lab's sandboxes.
type parRun struct {
	how          string // "sequential", "8 goroutines", "4 processes"
	n            int
	attachWall   time.Duration
	detachWall   time.Duration
	attach       []time.Duration // per call, all workers
	detach       []time.Duration
	dupAddr      int // addresses given to more than one sandbox
	dupMAC       int
	lostRules    int // published ports missing from the firewall or pointing elsewhere
	endpoints    int // endpoint records after the attach phase
	leftBehind   string
	err          string
	workersStart time.Duration // -procs: time for the workers to be ready (not timed)
	floor        bool          // the kernel's bare requests (measureParallelFloor): no endpoints to check
}

func runParallel(ctx context.Context, scratch string, c config) error {
	n := 1000
	if flagSet("n") && *parallelMode {
		n = c.ns[len(c.ns)-1]
	} else if *quickFlag {
		n = 200
	}
	fmt.Printf("parallel: N=%d sandboxes, 1 published port each\n", n)
	started := time.Now()
	var runs []*parRun
	for _, how := range []struct {
		name       string
		goroutines int
		procs      int
	}{
		{"sequential", 1, 0},
		{fmt.Sprintf("%d goroutines, 1 process", *parGoroutines), *parGoroutines, 0},
		{fmt.Sprintf("%d processes", *parProcs), 0, *parProcs},
	} {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := measureParallel(ctx, scratch, n, how.goroutines, how.procs)
		r.how = how.name
		fmt.Println(r.line())
		runs = append(runs, r)
		settle(ctx, c.settle*time.Duration(n)/1000)
	}
	for _, g := range []int{1, *parGoroutines} {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := measureParallelFloor(ctx, scratch, n, g)
		r.how = "kernel floor as sandnet asks, sequential"
		if g > 1 {
			r.how = fmt.Sprintf("kernel floor as sandnet asks, %d goroutines", g)
		}
		fmt.Println(r.line())
		runs = append(runs, r)
		settle(ctx, c.settle*time.Duration(n)/1000)
	}
	md := parallelTable(runs)
	fmt.Println()
	fmt.Print(md)
	if err := writeParallel(c.out, runs, md, started, time.Now()); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(c.out, "parallel.md"), filepath.Join(c.out, "parallel.csv"))
	return nil
}

// flagSet reports whether the named flag was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func measureParallel(ctx context.Context, scratch string, n, goroutines, procs int) *parRun {
	r := &parRun{n: n}
	l, err := newLab(ctx, scratch, "parallel", n, true)
	if err != nil {
		r.err = "lab: " + err.Error()
		return r
	}
	defer l.close(context.WithoutCancel(ctx))
	stateDir := filepath.Join(l.dir, "state")
	h, err := sandnet.NewHostNS(l.host, sandnet.HostConfig{StateDir: stateDir})
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer h.Close()
	net := sandnet.Network{Name: "bench", Subnet: subnet, Gateway: gateway}
	if _, err := h.CreateNetwork(ctx, net); err != nil {
		r.err = err.Error()
		return r
	}
	if procs > 0 {
		err = parallelProcs(ctx, l, stateDir, net, procs, r, h)
	} else {
		err = parallelGoroutines(ctx, l, h, net, goroutines, r)
	}
	if err != nil {
		r.err = err.Error()
	}
	if err := h.RemoveNetwork(ctx, net.Name); err != nil && r.err == "" {
		r.err = "removing the network: " + err.Error()
	}
	return r
}

// attachOpts publishes sandbox i's port.
func attachOpts(i int) sandnet.AttachOptions {
	return sandnet.AttachOptions{Ports: []sandnet.PortMapping{{HostPort: hostPort(i), ContainerPort: containerPort, Proto: "tcp"}}}
}

// parallelGoroutines attaches the lab's sandboxes from g goroutines sharing
// one Host, then detaches them the same way.
func parallelGoroutines(ctx context.Context, l *lab, h *sandnet.Host, net sandnet.Network, g int, r *parRun) error {
	n := len(l.sbx)
	eps := make([]*sandnet.Endpoint, n)
	var err error
	r.attachWall, r.attach, err = inGoroutines(ctx, n, g, "attach", func(i int) (err error) {
		eps[i], err = h.Attach(ctx, l.path(i), net, attachOpts(i))
		return err
	})
	verifyParallel(ctx, l, h, r)
	detach := func(i int) error {
		if eps[i] == nil {
			return nil
		}
		return h.Detach(ctx, eps[i])
	}
	if err != nil {
		inGoroutines(ctx, n, g, "detach", detach)
		return err
	}
	r.detachWall, r.detach, err = inGoroutines(ctx, n, g, "detach", detach)
	r.leftBehind = parallelLeft(l, h)
	return err
}

// inGoroutines calls op for 0..n-1 from g goroutines, each taking the next
// number, and returns the wall time, every call's duration and the errors.
func inGoroutines(ctx context.Context, n, g int, name string, op func(i int) error) (time.Duration, []time.Duration, error) {
	var (
		next atomic.Int64
		mu   sync.Mutex
		ds   = make([]time.Duration, 0, n)
		errs []error
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := op(i)
				d := time.Since(t0)
				mu.Lock()
				ds = append(ds, d)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s %d: %w", name, i, err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return time.Since(start), ds, errors.Join(errs...)
}

// measureParallelFloor is the kernel's own share of the answer: the bare
// veth requests of the "kernel floor as sandnet asks" row of the attach
// table (one queue per end; detach until unregistered), made by g
// goroutines, each with its own netlink socket. The kernel takes its
// link lock (RTNL, one for the whole machine) for each of them, so their
// speed-up bounds what any tool's attach can get from concurrency here.
func measureParallelFloor(ctx context.Context, scratch string, n, g int) *parRun {
	r := &parRun{n: n, floor: true}
	l, err := newLab(ctx, scratch, "parallel-floor", n, false)
	if err != nil {
		r.err = "lab: " + err.Error()
		return r
	}
	defer l.close(context.WithoutCancel(ctx))
	s, err := startKernelLean(ctx, l)
	if err != nil {
		r.err = err.Error()
		return r
	}
	ks := s.(*kernelSession)
	socks := make(chan *nl.SocketHandle, g)
	for range g {
		sock, err := l.host.OwnRouteSocket()
		if err != nil {
			r.err = err.Error()
			return r
		}
		defer sock.Close()
		socks <- sock
	}
	r.attachWall, r.attach, err = inGoroutines(ctx, n, g, "attach", func(i int) error {
		sock := <-socks
		defer func() { socks <- sock }()
		return ks.attachOn(sock, i)
	})
	if err == nil {
		r.detachWall, r.detach, err = inGoroutines(ctx, n, g, "detach", func(i int) error { return ks.detach(ctx, i) })
	}
	ks.finish(ctx)
	if err != nil {
		r.err = err.Error()
	}
	return r
}

// workerJob is what a -procs worker is told on stdin.
type workerJob struct {
	HostNS   string
	StateDir string
	Network  sandnet.Network
	Sandbox  []string // namespace paths
	Index    []int    // the sandboxes' numbers (for their host ports)
}

// workerReport is a worker's answer per phase.
type workerReport struct {
	Durations []time.Duration
	Errors    []string
}

// parallelProcs starts procs workers (this binary again), gives each every
// procs-th sandbox, and times each phase from the go signal to the last
// report.
func parallelProcs(ctx context.Context, l *lab, stateDir string, net sandnet.Network, procs int, r *parRun, h *sandnet.Host) error {
	type worker struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Reader
	}
	t0 := time.Now()
	var ws []*worker
	defer func() {
		for _, w := range ws {
			w.in.Close()
			w.cmd.Wait()
		}
	}()
	for k := range procs {
		job := workerJob{HostNS: l.host.Path(), StateDir: stateDir, Network: net}
		for i := k; i < len(l.sbx); i += procs {
			job.Sandbox = append(job.Sandbox, l.path(i))
			job.Index = append(job.Index, i)
		}
		cmd := exec.CommandContext(ctx, "/proc/self/exe")
		cmd.Env = append(os.Environ(), envParallelWorker+"=1")
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting worker: %w", err)
		}
		w := &worker{cmd: cmd, in: in, out: bufio.NewReader(out)}
		ws = append(ws, w)
		if err := json.NewEncoder(in).Encode(job); err != nil {
			return err
		}
	}
	for _, w := range ws { // each says "ready" once its Host is open
		if line, err := w.out.ReadString('\n'); err != nil || line != "ready\n" {
			return fmt.Errorf("worker did not get ready: %q %v", line, err)
		}
	}
	r.workersStart = time.Since(t0)
	phase := func(op string) (time.Duration, []time.Duration, error) {
		start := time.Now()
		for _, w := range ws {
			io.WriteString(w.in, op+"\n")
		}
		var (
			ds   []time.Duration
			errs []error
		)
		for _, w := range ws {
			line, err := w.out.ReadString('\n')
			var rep workerReport
			if err == nil {
				err = json.Unmarshal([]byte(line), &rep)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("worker %s: %w", op, err))
				continue
			}
			ds = append(ds, rep.Durations...)
			for _, e := range rep.Errors {
				errs = append(errs, errors.New(e))
			}
		}
		return time.Since(start), ds, errors.Join(errs...)
	}
	var err error
	r.attachWall, r.attach, err = phase("attach")
	verifyParallel(ctx, l, h, r)
	derr := err
	r.detachWall, r.detach, err = phase("detach")
	r.leftBehind = parallelLeft(l, h)
	return errors.Join(derr, err)
}

// parallelWorker is a -procs worker: open a Host over the job's namespace
// and state dir, say "ready", then attach or detach all its sandboxes each
// time it reads "attach" or "detach", answering with one JSON line.
func parallelWorker(stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewReader(stdin)
	var job workerJob
	line, err := in.ReadBytes('\n')
	if err != nil {
		return err
	}
	if err := json.Unmarshal(line, &job); err != nil {
		return err
	}
	ns, err := netns.Open(job.HostNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := sandnet.NewHostNS(ns, sandnet.HostConfig{StateDir: job.StateDir})
	if err != nil {
		return err
	}
	defer h.Close()
	fmt.Fprintln(stdout, "ready")
	ctx := context.Background()
	eps := make([]*sandnet.Endpoint, len(job.Sandbox))
	for {
		op, err := in.ReadString('\n')
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var rep workerReport
		for k, sb := range job.Sandbox {
			t0 := time.Now()
			var err error
			switch strings.TrimSpace(op) {
			case "attach":
				eps[k], err = h.Attach(ctx, sb, job.Network, attachOpts(job.Index[k]))
			case "detach":
				if eps[k] != nil {
					err = h.Detach(ctx, eps[k])
				}
			default:
				return fmt.Errorf("unknown op %q", op)
			}
			rep.Durations = append(rep.Durations, time.Since(t0))
			if err != nil {
				rep.Errors = append(rep.Errors, fmt.Sprintf("%s %d: %v", strings.TrimSpace(op), job.Index[k], err))
			}
		}
		b, _ := json.Marshal(rep)
		stdout.Write(append(b, '\n'))
	}
}

// natElem matches a published port's map element in `nft list ruleset`:
// "tcp . 20007 comment "..." : 10.77.0.9 . 80" (key protocol . host port,
// target address . port).
var natElem = regexp.MustCompile(`\b(\d{1,5})(?: comment "[^"]*")? : (\d+\.\d+\.\d+\.\d+) \. (\d{1,5})\b`)

// verifyParallel checks the attach phase's outcome from outside sandnet's
// code paths: the endpoint records (one per sandbox, no address or MAC
// twice) and the lab host's ruleset (every host port maps to its sandbox).
func verifyParallel(ctx context.Context, l *lab, h *sandnet.Host, r *parRun) {
	eps, err := h.Endpoints("bench")
	if err != nil {
		r.err = "listing endpoints: " + err.Error()
		return
	}
	r.endpoints = len(eps)
	addrOf := map[uint16]netip.Addr{} // host port -> sandbox address
	addrs, macs := map[netip.Addr]int{}, map[string]int{}
	for _, ep := range eps {
		for _, p := range ep.Addresses {
			addrs[p.Addr()]++
		}
		macs[ep.MAC]++
		for _, p := range ep.Ports {
			if len(ep.Addresses) > 0 {
				addrOf[p.HostPort] = ep.Addresses[0].Addr()
			}
		}
	}
	for _, c := range addrs {
		r.dupAddr += c - 1
	}
	for _, c := range macs {
		r.dupMAC += c - 1
	}
	out, err := l.host.Command(ctx, "nft", "list", "ruleset").Output()
	if err != nil {
		r.lostRules = -1 // not checked
		return
	}
	found := map[uint16]netip.Addr{}
	for _, m := range natElem.FindAllStringSubmatch(string(out), -1) {
		hp, _ := strconv.Atoi(m[1])
		a, err := netip.ParseAddr(m[2])
		if err == nil && m[3] == strconv.Itoa(containerPort) {
			found[uint16(hp)] = a
		}
	}
	for i := range l.sbx {
		want, ok := addrOf[hostPort(i)]
		if !ok || found[hostPort(i)] != want {
			r.lostRules++
		}
	}
}

// parallelLeft says what the detach phase left: veths and records.
func parallelLeft(l *lab, h *sandnet.Host) string {
	var left []string
	if n := veths(l.host); n > 0 {
		left = append(left, fmt.Sprintf("%d veth(s)", n))
	}
	if eps, _ := h.Endpoints(""); len(eps) > 0 {
		left = append(left, fmt.Sprintf("%d endpoint record(s)", len(eps)))
	}
	return leftNote(left)
}

func (r *parRun) rate(wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(r.n) / wall.Seconds()
}

func (r *parRun) line() string {
	if r.err != "" && r.attachWall == 0 {
		return fmt.Sprintf("%-22s n=%d %s", r.how, r.n, r.err)
	}
	a, d := statsOf(r.attach, r.attachWall), statsOf(r.detach, r.detachWall)
	return fmt.Sprintf("%-22s n=%d attach wall %s (%.0f/s, p50 %s ms) | detach wall %s (%.0f/s, p50 %s ms) | %d endpoints, dup addr %d, dup MAC %d, lost rules %d %s %s",
		r.how, r.n, sec(r.attachWall), r.rate(r.attachWall), ms(a.p50), sec(r.detachWall), r.rate(r.detachWall), ms(d.p50),
		r.endpoints, r.dupAddr, r.dupMAC, r.lostRules, r.leftBehind, r.err)
}

func parallelTable(runs []*parRun) string {
	var b strings.Builder
	b.WriteString("| how | N | attach wall s | attach sandboxes/s | ÷ sequential | attach p50 ms | detach wall s | detach sandboxes/s | ÷ sequential | detach p50 ms | endpoints | duplicate addresses | duplicate MACs | lost port rules |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var seq, floorSeq *parRun
	var notes []string
	for _, r := range runs {
		if r.attachWall == 0 {
			notes = append(notes, fmt.Sprintf("%s: not measured: %s", r.how, r.err))
			continue
		}
		if seq == nil && !r.floor {
			seq = r
		}
		if floorSeq == nil && r.floor {
			floorSeq = r
		}
		base := seq
		if r.floor {
			base = floorSeq
		}
		ratio := func(wall, seqWall time.Duration) string {
			if wall <= 0 || seqWall <= 0 {
				return "-"
			}
			return times(float64(seqWall) / float64(wall))
		}
		checks := fmt.Sprintf("%d | %d | %d | %d", r.endpoints, r.dupAddr, r.dupMAC, r.lostRules)
		if r.lostRules < 0 {
			checks = fmt.Sprintf("%d | %d | %d | not checked (no nft)", r.endpoints, r.dupAddr, r.dupMAC)
		}
		if r.floor {
			checks = "- | - | - | -"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %.0f | %s | %s | %s | %.0f | %s | %s | %s |\n",
			r.how, r.n, strings.TrimSuffix(sec(r.attachWall), "s"), r.rate(r.attachWall), ratio(r.attachWall, base.attachWall),
			ms(statsOf(r.attach, 0).p50), strings.TrimSuffix(sec(r.detachWall), "s"), r.rate(r.detachWall), ratio(r.detachWall, base.detachWall),
			ms(statsOf(r.detach, 0).p50), checks)
		if r.err != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.how, r.err))
		}
		if r.leftBehind != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.how, r.leftBehind))
		}
	}
	b.WriteString("\n")
	for _, n := range notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

func writeParallel(dir string, runs []*parRun, table string, started, finished time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	md.WriteString("# Concurrent attach/detach: sandnet\n\n")
	fmt.Fprintf(&md, "Generated by `go run ./bench` (after the attach table; alone: `-parallel`) on %s (kernel %s), %s. ", started.UTC().Format("2006-01-02"), kernelRelease(), finished.Sub(started).Round(time.Second))
	md.WriteString("Each row is a fresh lab: N sandbox namespaces (made beforehand, not timed) attached to one bridge network with one published TCP port each, then detached, ")
	md.WriteString("sequentially, by goroutines sharing one `Host`, and by processes each with its own `Host` over the same state dir (as several runtimes or CLI calls would). ")
	md.WriteString("Wall time runs from the start signal to the last sandbox; \"÷ sequential\" is the speed-up. After the attach phase the endpoint records are checked for addresses and MACs given twice, ")
	md.WriteString("and the lab host's `nft list ruleset` for every host port mapping to its own sandbox's address. ")
	md.WriteString("The \"kernel floor\" rows are the bare veth requests of the attach table's \"kernel floor as sandnet asks\" row (no port, no address), sequential and from goroutines with a netlink socket each; ")
	md.WriteString("their \"÷ sequential\" is against the floor's own sequential row. The kernel makes every link change under one lock for the whole machine (RTNL), ")
	md.WriteString("so the floor's speed-up is about as much as concurrency can give any tool's attach here.\n\n")
	md.WriteString(table)
	if err := os.WriteFile(filepath.Join(dir, "parallel.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	rows := [][]string{{"how", "n", "attach_wall_s", "attach_per_s", "attach_p50_ms", "detach_wall_s", "detach_per_s", "detach_p50_ms", "endpoints", "dup_addr", "dup_mac", "lost_rules", "note"}}
	for _, r := range runs {
		rows = append(rows, []string{r.how, strconv.Itoa(r.n),
			strconv.FormatFloat(r.attachWall.Seconds(), 'f', 3, 64), strconv.FormatFloat(r.rate(r.attachWall), 'f', 0, 64), ms(statsOf(r.attach, 0).p50),
			strconv.FormatFloat(r.detachWall.Seconds(), 'f', 3, 64), strconv.FormatFloat(r.rate(r.detachWall), 'f', 0, 64), ms(statsOf(r.detach, 0).p50),
			strconv.Itoa(r.endpoints), strconv.Itoa(r.dupAddr), strconv.Itoa(r.dupMAC), strconv.Itoa(r.lostRules), strings.TrimSpace(r.err + " " + r.leftBehind)})
	}
	return writeCSVFile(filepath.Join(dir, "parallel.csv"), rows)
}

// writeCSVFile writes rows (the header first) to path.
func writeCSVFile(path string, rows [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.WriteAll(rows) // flushes
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
