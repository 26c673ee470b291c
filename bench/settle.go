package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"
)

// settle waits, between two runs, for the kernel to finish tearing down
// what the last one deleted: at least pause, then until the machine's CPUs
// are mostly idle (under a fifth busy over a quarter second), at most
// 30 s more. Deleting a thousand namespaces leaves the kernel's cleanup
// work running for seconds after the last delete returns, and a run that
// starts meanwhile measures that work as its own; a fixed pause long
// enough for the worst case would make the whole bench much slower.
func settle(ctx context.Context, pause time.Duration) {
	deadline := time.Now().Add(pause + 30*time.Second)
	select {
	case <-time.After(pause):
	case <-ctx.Done():
		return
	}
	for time.Now().Before(deadline) {
		busy0, total0 := cpuTimes()
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return
		}
		busy1, total1 := cpuTimes()
		if total1 <= total0 || (busy1-busy0)*5 < total1-total0 {
			return
		}
	}
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
