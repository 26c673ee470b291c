package nettest

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/probe"
)

// PingTimeout is how long Ping waits for an answer.
var PingTimeout = time.Second

// Ping sends ICMP echo requests from sandbox from to to's address (one
// every 200 ms, for up to PingTimeout) and returns nil at the first reply.
// It runs in this process (a raw socket inside from), no ping program.
func Ping(from, to *Sandbox) error {
	a := to.Addr()
	if !a.IsValid() {
		return fmt.Errorf("ping %s -> %s: %s has no address", from.Name, to.Name, to.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), PingTimeout)
	defer cancel()
	if err := PingAddr(ctx, from, a); err != nil {
		return fmt.Errorf("ping %s -> %s: %w", from.Name, to.Name, err)
	}
	return nil
}

// Reachable reports whether Ping(from, to) gets an answer.
func Reachable(from, to *Sandbox) bool { return Ping(from, to) == nil }

// WaitReachable pings from from to to until an answer comes back or ctx
// ends (then it returns the last error).
func WaitReachable(ctx context.Context, from, to *Sandbox) error {
	for {
		err := Ping(from, to)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to reach %s: %w (last: %v)", from.Name, to.Name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PingAddr pings the IPv4 or IPv6 address to from inside sandbox from until
// a reply comes or ctx ends.
func PingAddr(ctx context.Context, from *Sandbox, to netip.Addr) error {
	return probe.Ping(ctx, from.NS, to)
}

// Want says whether from should reach to, for Matrix.
type Want func(from, to *Sandbox) bool

// AllPairs wants every sandbox to reach every other.
func AllPairs(from, to *Sandbox) bool { return true }

// Groups wants sandboxes to reach each other when they are in the same
// group, and not otherwise.
func Groups(groups ...[]*Sandbox) Want {
	group := map[*Sandbox]int{}
	for i, g := range groups {
		for _, s := range g {
			group[s] = i + 1
		}
	}
	return func(from, to *Sandbox) bool {
		return group[from] != 0 && group[from] == group[to]
	}
}

// MatrixGrace is how long Matrix keeps pinging a pair that want says
// reaches, before it counts as not reaching (fresh links take a moment on a
// busy machine). A pair that should not reach is probed for PingTimeout.
var MatrixGrace = 5 * time.Second

// Matrix pings every ordered pair of sandboxes (concurrently) and fails t
// with a readable grid when any pair differs from want.
func Matrix(t testing.TB, want Want, sandboxes ...*Sandbox) {
	t.Helper()
	if got := reachability(want, sandboxes); !got.Matches(want) {
		t.Errorf("nettest: reachability differs from what the test wants\n%s", got.Grid(want))
	}
}

// Result holds whether each ordered pair of sandboxes reached the other.
type Result struct {
	Sandboxes []*Sandbox
	Reached   [][]bool // Reached[i][j]: Sandboxes[i] reached Sandboxes[j]
}

// Reachability pings every ordered pair of sandboxes, concurrently.
func Reachability(sandboxes ...*Sandbox) Result { return reachability(nil, sandboxes) }

func reachability(want Want, sandboxes []*Sandbox) Result {
	n := len(sandboxes)
	r := Result{Sandboxes: sandboxes, Reached: make([][]bool, n)}
	var wg sync.WaitGroup
	for i := range n {
		r.Reached[i] = make([]bool, n)
		for j := range n {
			if i == j {
				continue
			}
			from, to := sandboxes[i], sandboxes[j]
			wg.Go(func() {
				if want == nil || !want(from, to) {
					r.Reached[i][j] = Reachable(from, to)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), MatrixGrace)
				defer cancel()
				r.Reached[i][j] = WaitReachable(ctx, from, to) == nil
			})
		}
	}
	wg.Wait()
	return r
}

// Matches reports whether every pair is as want says.
func (r Result) Matches(want Want) bool {
	for i, from := range r.Sandboxes {
		for j, to := range r.Sandboxes {
			if i != j && r.Reached[i][j] != want(from, to) {
				return false
			}
		}
	}
	return true
}

// Grid renders the result: rows ping columns; "ok" reached, "--" did not,
// and a "!" marks each cell that differs from want (nil: mark nothing).
func (r Result) Grid(want Want) string {
	w := 4
	for _, s := range r.Sandboxes {
		w = max(w, len(s.Name)+1)
	}
	var b strings.Builder
	b.WriteString("(row pings column: ok = reached, -- = no reply, ! = not what the test wants)\n")
	head := fmt.Sprintf("%-*s", w, "")
	for _, s := range r.Sandboxes {
		head += fmt.Sprintf("%-*s", w, s.Name)
	}
	b.WriteString(strings.TrimRight(head, " "))
	b.WriteByte('\n')
	for i, from := range r.Sandboxes {
		row := fmt.Sprintf("%-*s", w, from.Name)
		for j, to := range r.Sandboxes {
			cell := "."
			if i != j {
				cell = map[bool]string{true: "ok", false: "--"}[r.Reached[i][j]]
				if want != nil && r.Reached[i][j] != want(from, to) {
					cell += "!"
				}
			}
			row += fmt.Sprintf("%-*s", w, cell)
		}
		b.WriteString(strings.TrimRight(row, " "))
		b.WriteByte('\n')
	}
	return b.String()
}
