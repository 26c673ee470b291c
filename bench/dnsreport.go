package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dnsResult is one measure of one server: the median of its runs.
type dnsResult struct {
	server  string // label
	measure string
	names   int
	load    load
	rss     int64 // serving process, after the measure (memory rows)
	err     string
}

// The measures, in the order they run for each server.
const (
	mLocal   = "local names"
	mForward = "forwarded names"
	mChurn   = "local names, attach/detach churn"
	mMemory  = "server memory (RSS)"
)

func runDNS(ctx context.Context, scratch string, c config) error {
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return fmt.Errorf("-dns needs dnsperf (Debian: apt-get install dnsperf)")
	}
	secs, runs, counts := 10*time.Second, 3, []int{10, 1000}
	if *quickFlag {
		secs, runs, counts = 3*time.Second, 1, []int{10, 200}
	}
	if *dnsLoad > 0 {
		secs = *dnsLoad
	}
	if *dnsRuns > 0 {
		runs = *dnsRuns
	}
	if *dnsNames != "" {
		var err error
		if counts, err = ints(*dnsNames, 1, 5000); err != nil {
			return fmt.Errorf("-dns-names: %w", err)
		}
	}
	want := strings.Split(*dnsServers, ",")
	started := time.Now()
	var (
		res     []*dnsResult
		missing []string
		labels  []string
	)
	for _, k := range dnsServerKinds {
		if !slices.Contains(want, k.name) {
			continue
		}
		if why := k.missing(); why != "" {
			fmt.Printf("%s: skipped: %s\n", k.label, why)
			missing = append(missing, k.label+": "+why)
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		labels = append(labels, k.label)
		res = append(res, measureDNS(ctx, scratch, k, counts, secs, runs)...)
		settle(ctx, c.settle)
	}
	table := dnsTable(res, labels, counts)
	fmt.Println()
	fmt.Print(table)
	for _, m := range missing {
		table += "- missing: " + m + "\n"
	}
	if err := writeDNS(c.out, res, table, started, time.Now(), secs, runs); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(c.out, "dns.md"), filepath.Join(c.out, "dns.csv"))
	return nil
}

func measureDNS(ctx context.Context, scratch string, k dnsServerKind, counts []int, secs time.Duration, runs int) []*dnsResult {
	var out []*dnsResult
	fail := func(measure string, n int, err error) []*dnsResult {
		fmt.Printf("%-12s %s: %v\n", k.label, measure, err)
		return append(out, &dnsResult{server: k.label, measure: measure, names: n, err: err.Error()})
	}
	maxN := counts[len(counts)-1]
	sandboxes := 1
	if k.name == "sandnet" {
		sandboxes = 1 + churnPool + maxN // client, churn, names: real sandboxes
	}
	l, err := newDNSLab(ctx, scratch, k.name, sandboxes)
	if err != nil {
		return fail("lab", 0, err)
	}
	defer l.close(context.WithoutCancel(ctx))
	srv, err := k.start(ctx, l)
	if err != nil {
		return fail("start", 0, err)
	}
	defer srv.close(context.WithoutCancel(ctx))

	fwd := make([]string, 10000)
	for i := range fwd {
		fwd[i] = fmt.Sprintf("f%d.%s", i, strings.TrimSuffix(fwdDomain, "."))
	}
	fwdFile, err := queryFile(l.dir, "forward.txt", fwd)
	if err != nil {
		return fail(mForward, 0, err)
	}
	// best runs a measure runs times and keeps the median by QPS.
	best := func(measure string, n int, file string, during func(stop <-chan struct{}) (float64, int)) *dnsResult {
		var ls []load
		for range runs {
			var (
				stop    = make(chan struct{})
				done    = make(chan struct{})
				changes float64
				errs    int
			)
			if during != nil {
				go func() { defer close(done); changes, errs = during(stop) }()
			}
			stopProfile := startProfile(k.name, "dns-"+strings.NewReplacer(" ", "_", ",", "", "/", "-").Replace(measure), n, 0)
			pid := srv.pid()
			cpu0 := procCPU(pid)
			ld, err := dnsperf(ctx, l, file, secs)
			if pid > 0 && srv.pid() == pid {
				ld.cpu = max(0, procCPU(pid)-cpu0)
			} // else the server went (or changed) during the run: its CPU time is unknown
			stopProfile()
			if during != nil {
				close(stop)
				<-done
				ld.changes, ld.churnErrs = changes, errs
			}
			if err != nil {
				r := &dnsResult{server: k.label, measure: measure, names: n, err: err.Error()}
				fmt.Printf("%-12s %-34s n=%-5d %s\n", k.label, measure, n, r.err)
				return r
			}
			ls = append(ls, ld)
		}
		slices.SortFunc(ls, func(a, b load) int { return int(a.qps - b.qps) })
		r := &dnsResult{server: k.label, measure: measure, names: n, load: ls[len(ls)/2]}
		fmt.Printf("%-12s %-34s n=%-5d %8.0f q/s  p50 %s ms  p99 %s ms  lost %d/%d  %.1f µs CPU/query", k.label, measure, n, r.load.qps, ms(r.load.p50), ms(r.load.p99), r.load.lost, r.load.sent, float64(r.load.cpuPerQuery())/1e3)
		if during != nil {
			fmt.Printf("  %.0f changes/s (%d failed)", r.load.changes, r.load.churnErrs)
		}
		fmt.Println()
		return r
	}
	for j, n := range counts {
		if err := srv.setNames(ctx, n); err != nil {
			return fail(mLocal, n, err)
		}
		if err := waitAnswer(ctx, l, localName(n-1), 10*time.Second); err != nil {
			return fail(mLocal, n, err)
		}
		names := make([]string, n)
		for i := range names {
			names[i] = localName(i)
		}
		file, err := queryFile(l.dir, fmt.Sprintf("local%d.txt", n), names)
		if err != nil {
			return fail(mLocal, n, err)
		}
		out = append(out, best(mLocal, n, file, nil))
		rss, _ := procMem(srv.pid())
		out = append(out, &dnsResult{server: k.label, measure: mMemory, names: n, rss: rss})
		if j == 0 {
			if err := waitAnswer(ctx, l, fwd[0], 10*time.Second); err != nil {
				out = append(out, &dnsResult{server: k.label, measure: mForward, names: n, err: err.Error()})
			} else {
				out = append(out, best(mForward, n, fwdFile, nil))
			}
		}
		if j == len(counts)-1 {
			out = append(out, best(mChurn, n, file, func(stop <-chan struct{}) (float64, int) {
				return churn(ctx, srv, stop)
			}))
		}
	}
	return out
}

// churn adds and removes churn names in turn, one change every churnEvery,
// until stop; it returns the changes per second it achieved and how many
// failed.
func churn(ctx context.Context, srv nameServer, stop <-chan struct{}) (float64, int) {
	start := time.Now()
	changes, failed := 0, 0
	on := make([]bool, churnPool)
	t := time.NewTicker(churnEvery)
	defer t.Stop()
	for i := 0; ; i++ {
		k := (i / 2) % churnPool
		if err := srv.churn(ctx, k, !on[k]); err != nil {
			failed++
		}
		on[k] = !on[k]
		changes++
		select {
		case <-stop:
			for k, o := range on { // leave no churn name behind
				if o {
					srv.churn(context.WithoutCancel(ctx), k, false)
				}
			}
			return float64(changes) / time.Since(start).Seconds(), failed
		case <-t.C:
		}
	}
}

// dnsTable renders one row per measure and one column per server:
// "QPS / p99 ms", with the QPS as a multiple of dnsmasq's.
func dnsTable(res []*dnsResult, servers []string, counts []int) string {
	find := func(server, measure string, n int) *dnsResult {
		for _, r := range res {
			if r.server == server && r.measure == measure && r.names == n {
				return r
			}
		}
		return nil
	}
	var b strings.Builder
	b.WriteString("| measure | names |")
	for _, s := range servers {
		fmt.Fprintf(&b, " %s |", s)
	}
	b.WriteString("\n|---|---:|")
	for range servers {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	type row struct {
		measure string
		n       int
	}
	var rows []row
	for _, n := range counts {
		rows = append(rows, row{mLocal, n})
	}
	rows = append(rows, row{mForward, counts[0]}, row{mChurn, counts[len(counts)-1]})
	for _, n := range counts {
		rows = append(rows, row{mMemory, n})
	}
	var notes []string
	for _, rw := range rows {
		fmt.Fprintf(&b, "| %s | %d |", rw.measure, rw.n)
		ref := find("dnsmasq", rw.measure, rw.n)
		for _, s := range servers {
			r := find(s, rw.measure, rw.n)
			switch {
			case r == nil:
				b.WriteString(" - |")
			case r.err != "":
				b.WriteString(" failed |")
				notes = append(notes, fmt.Sprintf("%s, %s, %d names: %s", s, rw.measure, rw.n, r.err))
			case rw.measure == mMemory:
				fmt.Fprintf(&b, " %.1f MB |", float64(r.rss)/(1<<20))
			default:
				cell := fmt.Sprintf("%.0f q/s, p99 %s ms", r.load.qps, ms(r.load.p99))
				if c := r.load.cpuPerQuery(); c > 0 {
					cell += fmt.Sprintf(", %.1f µs CPU/q", float64(c)/1e3)
				}
				if ref != nil && ref.err == "" && ref.load.qps > 0 && s != "dnsmasq" {
					cell += fmt.Sprintf(" (%s)", times(r.load.qps/ref.load.qps))
				}
				if r.load.lost > 0 {
					cell += fmt.Sprintf(", %d lost", r.load.lost)
				}
				if rw.measure == mChurn {
					cell += fmt.Sprintf(", %.0f changes/s", r.load.changes)
					if r.load.churnErrs > 0 {
						notes = append(notes, fmt.Sprintf("%s: %d name changes failed under churn", s, r.load.churnErrs))
					}
				}
				fmt.Fprintf(&b, " %s |", cell)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	for _, n := range notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

func writeDNS(dir string, res []*dnsResult, table string, started, finished time.Time, secs time.Duration, runs int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	md.WriteString("# Name server: sandnet, aardvark-dns, dnsmasq\n\n")
	fmt.Fprintf(&md, "Generated by `go run ./bench -dns` on %s (kernel %s), %s. ", started.UTC().Format("2006-01-02"), kernelRelease(), finished.Sub(started).Round(time.Second))
	fmt.Fprintf(&md, "Each server runs in its own lab: it listens on the gateway address of the same sandnet bridge network (bridge, NAT and isolation rules; for the peers with sandnet's own name server off) in a namespace playing the host; the load is dnsperf (UDP, 100 queries in flight, its line per answer written to a file in memory and read after the run) in a sandbox on that bridge, %s per run, the median of %d run(s) by QPS; p99 is over every query sent (a lost one counts as the 2 s timeout). ", secs, runs)
	md.WriteString("Forwarded names go to an upstream namespace a veth away, where a small authoritative server answers every name of `fwd.test` with TTL 0 (so nothing caches them); 10,000 distinct names are asked in turn. ")
	md.WriteString("Local names are sandboxes' names: sandnet's are real sandboxes attached with a hostname; aardvark-dns gets them as netavark writes them (one config file per network, SIGHUP), dnsmasq as the dnsname CNI plugin did (an additional hosts file, SIGHUP). ")
	fmt.Fprintf(&md, "Under churn, a name is added or removed every %s (sandnet: a real Attach or Detach of a named sandbox; the peers: their file rewritten and the server signalled) while dnsperf asks the local names. ", churnEvery)
	md.WriteString("Memory is the serving process's resident set (sandnet: its DNS helper process) after the local-names run. \"CPU/q\" is the serving process's CPU time (user and system, from /proc) per answered query, which the machine's other load disturbs less than QPS; for sandnet under churn it includes following the record changes. The multiple in brackets is the QPS as a multiple of dnsmasq's.\n\n")
	md.WriteString(table)
	if err := os.WriteFile(filepath.Join(dir, "dns.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	rows := [][]string{{"server", "measure", "names", "qps", "p50_ms", "p99_ms", "sent", "lost", "cpu_us_per_query", "changes_per_s", "rss_mb", "error"}}
	for _, r := range res {
		rss := ""
		if r.rss > 0 {
			rss = strconv.FormatFloat(float64(r.rss)/(1<<20), 'f', 1, 64)
		}
		rows = append(rows, []string{r.server, r.measure, strconv.Itoa(r.names), strconv.FormatFloat(r.load.qps, 'f', 0, 64),
			ms(r.load.p50), ms(r.load.p99), strconv.Itoa(r.load.sent), strconv.Itoa(r.load.lost),
			strconv.FormatFloat(float64(r.load.cpuPerQuery())/1e3, 'f', 2, 64),
			strconv.FormatFloat(r.load.changes, 'f', 1, 64), rss, r.err})
	}
	return writeCSVFile(filepath.Join(dir, "dns.csv"), rows)
}
