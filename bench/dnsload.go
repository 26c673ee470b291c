package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sandnet/sandnet/netns"
)

// ---- the upstream: a tiny authoritative server for fwdDomain ----

// upstream answers every name under fwdDomain with fwdAnswer (TTL 0, so no
// forwarder can cache it) and NXDOMAIN otherwise, from one UDP socket per
// CPU bound in its namespace, so it is never the bottleneck.
type upstream struct {
	conns []net.PacketConn
	wg    sync.WaitGroup
}

func startUpstream(ns *netns.NS, addr netip.AddrPort) (*upstream, error) {
	u := &upstream{}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1) })
		return errors.Join(err, serr)
	}}
	for range max(2, runtime.NumCPU()) {
		var pc net.PacketConn
		err := ns.Do(func() (err error) {
			pc, err = lc.ListenPacket(context.Background(), "udp", addr.String())
			return err
		})
		if err != nil {
			u.close()
			return nil, fmt.Errorf("upstream server: %w", err)
		}
		u.conns = append(u.conns, pc)
		u.wg.Add(1)
		go u.serve(pc)
	}
	return u, nil
}

func (u *upstream) serve(pc net.PacketConn) {
	defer u.wg.Done()
	buf := make([]byte, 4096)
	var req mdns.Msg
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if req.Unpack(buf[:n]) != nil || len(req.Question) != 1 {
			continue
		}
		resp := new(mdns.Msg)
		resp.SetReply(&req)
		resp.Authoritative = true
		q := req.Question[0]
		if !mdns.IsSubDomain(fwdDomain, strings.ToLower(q.Name)) {
			resp.Rcode = mdns.RcodeNameError
		} else if q.Qtype == mdns.TypeA {
			resp.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 0}, A: fwdAnswer.AsSlice()}}
		}
		out, err := resp.PackBuffer(make([]byte, 512))
		if err == nil {
			pc.WriteTo(out, from)
		}
	}
}

func (u *upstream) close() {
	for _, c := range u.conns {
		c.Close()
	}
	u.wg.Wait()
}

// ---- the load: dnsperf from the client sandbox ----

// load is one dnsperf run's outcome.
type load struct {
	qps       float64
	p50, p99  time.Duration
	sent      int
	lost      int
	changes   float64 // name changes per second during the run (churn)
	churnErrs int
	cpu       time.Duration // the server process's CPU time (user+system) during the run
}

// cpuPerQuery is the server's CPU time per answered query: a figure the
// machine's other load disturbs less than QPS.
func (l load) cpuPerQuery() time.Duration {
	if l.sent-l.lost <= 0 {
		return 0
	}
	return l.cpu / time.Duration(l.sent-l.lost)
}

// procCPU is a process's CPU time so far (user+system, all threads).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// dnsperf runs dnsperf in the client sandbox against the gateway for d
// with the queries of file, every response logged (-v) for the percentiles.
// A lost query counts as slower than every answer.
func dnsperf(ctx context.Context, l *dnsLab, file string, d time.Duration) (load, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "dnsperf", "-s", dnsGateway.String(), "-d", file,
		"-l", strconv.FormatFloat(d.Seconds(), 'f', 1, 64), "-t", "2", "-v")
	// dnsperf's log (-v: a line per answer) goes to a file in memory, read
	// when it is done: a pipe read while it runs would put this process's
	// wake-ups among the load it measures.
	logf, err := os.CreateTemp(l.dir, "dnsperf-*.log")
	if err != nil {
		return load{}, err
	}
	defer os.Remove(logf.Name())
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	err = l.client().Do(func() error { return cmd.Start() })
	if err == nil {
		err = cmd.Wait()
	}
	if _, serr := logf.Seek(0, io.SeekStart); serr == nil {
		out.ReadFrom(logf)
	}
	if err != nil {
		return load{}, fmt.Errorf("dnsperf: %w: %s", err, lastLines(out.String(), 5))
	}
	var (
		r   load
		lat []time.Duration
	)
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "> "):
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				lat = append(lat, time.Duration(v*1e9))
			}
		case strings.Contains(line, "Queries per second:"):
			r.qps, _ = strconv.ParseFloat(strings.TrimSpace(strings.SplitN(line, ":", 2)[1]), 64)
		case strings.Contains(line, "Queries sent:"):
			r.sent, _ = strconv.Atoi(strings.Fields(strings.SplitN(line, ":", 2)[1])[0])
		case strings.Contains(line, "Queries lost:"):
			r.lost, _ = strconv.Atoi(strings.Fields(strings.SplitN(line, ":", 2)[1])[0])
		}
	}
	if r.sent == 0 {
		return r, fmt.Errorf("dnsperf sent nothing: %s", lastLines(out.String(), 5))
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		k := int(p * float64(r.sent))
		if k >= len(lat) {
			return 2 * time.Second // lost: at least the timeout
		}
		return lat[k]
	}
	r.p50, r.p99 = q(0.50), q(0.99)
	return r, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}

// queryFile writes a dnsperf input file: one "NAME A" line per name.
func queryFile(dir, name string, names []string) (string, error) {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + " A\n")
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// waitAnswer asks the server from the client sandbox until name resolves.
func waitAnswer(ctx context.Context, l *dnsLab, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		var c net.Conn
		err := l.client().Do(func() (err error) {
			c, err = net.Dial("udp", netip.AddrPortFrom(dnsGateway, 53).String())
			return err
		})
		if err == nil {
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			m := new(mdns.Msg)
			m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
			co := &mdns.Conn{Conn: c}
			if err = co.WriteMsg(m); err == nil {
				var r *mdns.Msg
				if r, err = co.ReadMsg(); err == nil {
					if len(r.Answer) > 0 {
						c.Close()
						return nil
					}
					err = fmt.Errorf("%s: %s", name, mdns.RcodeToString[r.Rcode])
				}
			}
			c.Close()
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("the server does not answer %s: %v", name, last)
}

// procMem reads a process's resident set and its peak, in bytes.
func procMem(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb * 1024
		case "VmHWM:":
			hwm = kb * 1024
		}
	}
	return rss, hwm
}
