package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"
)

// settle waits, between two runs, for the kernel to finish tearing down
// what the last one deleted: at least pause, then until the network
// namespaces alive are back to as many as when the bench started
// (netnsBaseline) and the machine's CPUs are mostly idle (under a fifth
// busy over a quarter second), at most a minute more. Deleting a thousand
// namespaces leaves the kernel's cleanup work running for seconds after the
// last delete returns, much of it waiting for grace periods rather than
// using a CPU, and a run that starts meanwhile measures that work as its
// own; a fixed pause long enough for the worst case would make the whole
// bench much slower.
func settle(ctx context.Context, pause time.Duration) {
	deadline := time.Now().Add(pause + time.Minute)
	select {
	case <-time.After(pause):
	case <-ctx.Done():
		return
	}
	for time.Now().Before(deadline) {
		n, ok := netnsAlive()
		busy0, total0 := cpuTimes()
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return
		}
		busy1, total1 := cpuTimes()
		idle := total1 <= total0 || (busy1-busy0)*5 < total1-total0
		if idle && (!ok || n <= netnsBaseline+netnsSlack) {
			return
		}
	}
}

// netnsBaseline is how many network namespaces were alive when the bench
// started; netnsSlack allows for the slab counts' granularity and for
// namespaces other programs make meanwhile.
var (
	netnsBaseline, _ = netnsAlive()
	netnsSlack       = 16
)

// netnsAlive counts the kernel's network namespaces, deleted ones not yet
// torn down included: the active objects of the net_namespace slab cache
// (/proc/slabinfo). ok is false where that is not readable.
func netnsAlive() (n int, ok bool) {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "net_namespace" {
			n, err := strconv.Atoi(f[1])
			return n, err == nil
		}
	}
	return 0, false
}

// cpuTimes reads the busy and total time of all CPUs, in clock ticks,
// from /proc/stat (idle and iowait count as not busy); 0, 0 if unreadable.
func cpuTimes() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0
		}
		if i >= 7 { // guest times are counted in user already
			break
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total
}
