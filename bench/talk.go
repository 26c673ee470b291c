package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/pktcount"
	"github.com/sandnet/sandnet/internal/probe"
	"github.com/sandnet/sandnet/netns"
)

// talkMode (-talk) measures what sandboxes on one big bridge network see
// when they start to talk, with the bridge answering address resolution
// (sandnet's default) and flooding it (Network.NoNeighborProxy, what every
// plain bridge does), side by side in one run.
var talkMode = flag.Bool("talk", false, "instead of the attach/detach table: N sandboxes on one network, then a fresh one's first packets (talk.md, talk.csv); -n sets N")

// talkPort is where the gateway (the lab host) and every sandbox listen
// for the first TCP connect.
const talkPort = 7

// talkVariant is one way the network is set up.
type talkVariant struct {
	name  string
	flood bool // Network.NoNeighborProxy
}

var talkVariants = []talkVariant{{"flood", true}, {"answer", false}}

// talkResult is one variant at one N.
type talkResult struct {
	variant string
	n       int
	attach  []time.Duration
	// floodAttach and floodFirst are the frames a bystander sandbox
	// received (broadcast, multicast, unicast floods) while the fresh
	// sandbox was attached and while it sent its first packets; the
	// bridge sends the same to each of its n ports.
	floodAttach, floodFirst pktcount.Counts
	// The fresh sandbox's first packets: ICMP echo and TCP connect, to the
	// gateway and to a random earlier sandbox; zero when unanswered.
	echoGW, echoPeer, connGW, connPeer time.Duration
	// softnetDrops is the rise of the machine's softnet drop counter over
	// the fresh sandbox's attach and first packets.
	softnetDrops uint64
	note         string
}

func (r *talkResult) ok() bool {
	return r.note == "" && r.echoGW > 0 && r.echoPeer > 0 && r.connGW > 0 && r.connPeer > 0
}

// talkLab is one variant's lab: n sandboxes plus the fresh one (the last).
type talkLab struct {
	v   talkVariant
	lab *lab
	h   *sandnet.Host
	net sandnet.Network
	eps []*sandnet.Endpoint
	res *talkResult
}

func runTalk(ctx context.Context, scratch string, c config) error {
	loadStart := loadAvg()
	var results []*talkResult
	for _, n := range c.ns {
		rs, err := talkAt(ctx, scratch, n)
		for _, r := range rs {
			fmt.Println(r.line())
		}
		results = append(results, rs...)
		if err != nil {
			return err
		}
		settle(ctx, c.settle*time.Duration(2*n)/1000)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	fmt.Println()
	fmt.Print(talkTable(results))
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	md := "# Talking on one big network\n\n" + talkIntro + "\n" + talkTable(results) +
		fmt.Sprintf("\nLoad average (1 min) %s at the start, %s at the end, on %d CPUs.\n", loadStart, loadAvg(), runtime.NumCPU())
	if err := os.WriteFile(filepath.Join(c.out, "talk.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "talk.csv"), []byte(talkCSV(results)), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(c.out, "talk.md"), filepath.Join(c.out, "talk.csv"))
	return nil
}

const talkIntro = `Made by ` + "`go run ./bench -talk`" + `. Per N, two labs: the same bridge network
with N sandboxes, once flooding address resolution as a plain bridge does
(` + "`Network.NoNeighborProxy`" + `) and once with sandnet's default (the bridge answers
ARP for the sandboxes, gateway entries are permanent). Their attaches
alternate, so both see the same load. Then one fresh sandbox is attached
and sends its first packets: one ICMP echo and one TCP connect each to the
gateway and to a random earlier sandbox, each given 0.9 s (below the first
ARP and SYN retries, so an answer is the first packet's). "flooded/port" is
what a bystander sandbox received meanwhile (the bridge sends it to each of
the N ports); softnet drops are the machine's (the counter is not per
namespace), over the fresh sandbox's attach and first packets.
`

// talkAt runs both variants at n sandboxes.
func talkAt(ctx context.Context, scratch string, n int) ([]*talkResult, error) {
	var labs []*talkLab
	defer func() {
		for _, tl := range labs {
			tl.close(context.WithoutCancel(ctx))
		}
	}()
	for _, v := range talkVariants {
		tl, err := newTalkLab(ctx, scratch, v, n)
		if err != nil {
			return nil, fmt.Errorf("talk lab %s n=%d: %w", v.name, n, err)
		}
		labs = append(labs, tl)
	}
	// Attach the n sandboxes, alternating between the labs, and which
	// goes first, so neither has the other's warm caches or its share of
	// the machine's other load.
	for i := range n {
		order := labs
		if i%2 == 1 {
			order = []*talkLab{labs[1], labs[0]}
		}
		for _, tl := range order {
			if tl.res.note != "" {
				continue
			}
			t0 := time.Now()
			if err := tl.attach(ctx, i); err != nil {
				tl.res.note = fmt.Sprintf("attach %d: %v", i, err)
				continue
			}
			tl.res.attach = append(tl.res.attach, time.Since(t0))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	peer := rand.IntN(n)
	var out []*talkResult
	for _, tl := range labs {
		if tl.res.note == "" {
			tl.first(ctx, n, peer)
		}
		out = append(out, tl.res)
	}
	return out, nil
}

func newTalkLab(ctx context.Context, scratch string, v talkVariant, n int) (*talkLab, error) {
	l, err := newLab(ctx, scratch, "talk-"+v.name, n+1, false)
	if err != nil {
		return nil, err
	}
	tl := &talkLab{v: v, lab: l, eps: make([]*sandnet.Endpoint, n+1), res: &talkResult{variant: v.name, n: n}}
	tl.h, err = sandnet.NewHostNS(l.host, sandnet.HostConfig{StateDir: filepath.Join(l.dir, "state")})
	if err != nil {
		l.close(ctx)
		return nil, err
	}
	tl.net = sandnet.Network{Name: "talk", Subnet: subnet, Gateway: gateway, NoNeighborProxy: v.flood}
	if _, err := tl.h.CreateNetwork(ctx, tl.net); err != nil {
		tl.close(ctx)
		return nil, err
	}
	return tl, nil
}

func (tl *talkLab) attach(ctx context.Context, i int) error {
	ep, err := tl.h.Attach(ctx, tl.lab.path(i), tl.net, sandnet.AttachOptions{})
	tl.eps[i] = ep
	return err
}

func (tl *talkLab) close(ctx context.Context) {
	if tl.h != nil {
		for _, ep := range tl.eps {
			if ep != nil {
				tl.h.Detach(ctx, ep, sandnet.DetachOptions{SandboxGoing: true})
			}
		}
		tl.h.RemoveNetwork(ctx, tl.net.Name)
		tl.h.Close()
	}
	tl.lab.close(ctx)
}

// first attaches the fresh sandbox (index n) and sends its first packets
// to the gateway and to sandbox peer, counting what a bystander receives.
func (tl *talkLab) first(ctx context.Context, n, peer int) {
	r := tl.res
	fail := func(format string, args ...any) {
		if r.note == "" {
			r.note = fmt.Sprintf(format, args...)
		}
	}
	gw := tl.net.Gateway
	// Listeners: the gateway (the lab host) and the peer.
	for _, s := range []struct {
		ns   *netns.NS
		addr netip.Addr
	}{{tl.lab.host, gw}, {tl.lab.sbx[peer], tl.eps[peer].Addr(false)}} {
		ln, err := probe.Listen(s.ns, netip.AddrPortFrom(s.addr, talkPort))
		if err != nil {
			fail("listening on %s: %v", s.addr, err)
			return
		}
		defer ln.Close()
	}
	bystander := (peer + 1) % n
	cnt, err := pktcount.Open(tl.lab.sbx[bystander], "eth0", pktcount.All)
	if err != nil {
		fail("%v", err)
		return
	}
	defer cnt.Close()
	cnt.Read() // from zero
	drops0, _ := pktcount.SoftnetDropped()

	t0 := time.Now()
	if err := tl.attach(ctx, n); err != nil {
		fail("attaching the fresh sandbox: %v", err)
		return
	}
	r.attach = append(r.attach, time.Since(t0))
	r.floodAttach, _ = cnt.Read()

	fresh := tl.lab.sbx[n]
	peerAddr := tl.eps[peer].Addr(false)
	var errs []error
	var e error
	r.echoGW, e = probe.FirstEcho(fresh, gw, probe.FirstWait)
	errs = append(errs, e)
	r.echoPeer, e = probe.FirstEcho(fresh, peerAddr, probe.FirstWait)
	errs = append(errs, e)
	r.connGW, e = probe.Connect(fresh, netip.AddrPortFrom(gw, talkPort), probe.FirstWait)
	errs = append(errs, e)
	r.connPeer, e = probe.Connect(fresh, netip.AddrPortFrom(peerAddr, talkPort), probe.FirstWait)
	errs = append(errs, e)
	r.floodFirst, _ = cnt.Read()
	drops1, _ := pktcount.SoftnetDropped()
	r.softnetDrops = drops1 - drops0
	if err := errors.Join(errs...); err != nil {
		fail("%v", err)
	}
}

func (r *talkResult) line() string {
	a := statsOf(r.attach, 0)
	status := "all first packets answered"
	if !r.ok() {
		status = "FAILED: " + r.note
	}
	return fmt.Sprintf("talk %-6s n=%-5d attach p50 %s p95 %s | flooded/port: attach %d, first packets %d | echo gw %s peer %s, connect gw %s peer %s ms | softnet drops %d | %s",
		r.variant, r.n, ms(a.p50), ms(a.p95), r.floodAttach.Flooded(), r.floodFirst.Flooded(),
		ms(r.echoGW), ms(r.echoPeer), ms(r.connGW), ms(r.connPeer), r.softnetDrops, status)
}

func talkTable(rs []*talkResult) string {
	var b strings.Builder
	b.WriteString("| N | bridge | attach p50 ms | p95 ms | p50 vs flood (median of paired ratios) | flooded/port by attach | by first packets | frames flooded in all | first echo gw / peer ms | first connect gw / peer ms | softnet drops | first packets |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	base := map[int]*talkResult{}
	for _, r := range rs {
		if r.variant == "flood" {
			base[r.n] = r
		}
	}
	for _, r := range rs {
		a := statsOf(r.attach, 0)
		rel := "-"
		if b := base[r.n]; b != nil && r.variant != "flood" {
			rel = fmt.Sprintf("%.3fx (paired %.3fx)", float64(a.p50)/float64(statsOf(b.attach, 0).p50), pairedRatio(r.attach, b.attach))
		}
		status := "all answered"
		if !r.ok() {
			status = "**failed**: " + strings.NewReplacer("|", "/", "\n", "; ").Replace(r.note)
		}
		flooded := r.floodAttach.Flooded() + r.floodFirst.Flooded()
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %d (%s) | %d (%s) | %d | %s / %s | %s / %s | %d | %s |\n",
			r.n, r.variant, ms(a.p50), ms(a.p95), rel,
			r.floodAttach.Flooded(), r.floodAttach, r.floodFirst.Flooded(), r.floodFirst, flooded*r.n,
			ms(r.echoGW), ms(r.echoPeer), ms(r.connGW), ms(r.connPeer), r.softnetDrops, status)
	}
	return b.String()
}

func talkCSV(rs []*talkResult) string {
	var b strings.Builder
	b.WriteString("n,variant,attach_p50_ms,attach_p95_ms,flooded_attach,flooded_first,echo_gw_ms,echo_peer_ms,connect_gw_ms,connect_peer_ms,softnet_drops,ok,note\n")
	for _, r := range rs {
		a := statsOf(r.attach, 0)
		fmt.Fprintf(&b, "%d,%s,%s,%s,%d,%d,%s,%s,%s,%s,%d,%t,%q\n", r.n, r.variant, ms(a.p50), ms(a.p95),
			r.floodAttach.Flooded(), r.floodFirst.Flooded(), ms(r.echoGW), ms(r.echoPeer), ms(r.connGW), ms(r.connPeer),
			r.softnetDrops, r.ok(), r.note)
	}
	return b.String()
}

// pairedRatio is the median of a[i]/b[i]: attach i of two labs, made one
// right after the other, so the machine's load changes little between the
// two; steadier than the ratio of the two medians on a busy machine.
func pairedRatio(a, b []time.Duration) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, float64(a[i])/float64(b[i]))
		}
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	return rs[len(rs)/2]
}

// loadAvg is the machine's one-minute load average, as /proc/loadavg says.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
