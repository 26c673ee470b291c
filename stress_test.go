package sandnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// The stress test's shape: processes × goroutines × operations each.
const (
	stressProcs   = 4
	stressWorkers = 8
	stressOps     = 10
)

var stressNets = []Network{
	{Name: "stress-a", Subnet: netip.MustParsePrefix("10.97.64.0/24"), Subnet6: netip.MustParsePrefix("fd00:97:64::/64")},
	{Name: "stress-b", Subnet: netip.MustParsePrefix("10.97.65.0/24")},
}

// TestHelperStress is not a test: TestStressProcesses runs the test binary
// again with SANDNET_HELPER=stress; each such process runs stressWorkers
// goroutines doing random attaches (half of them publishing a port, picked
// at random or left to sandnet), detaches, "crashes" (the namespace
// deleted behind sandnet's back) and GCs. Namespaces it makes are named
// with the prefix in SANDNET_STRESS_PREFIX; the parent deletes them.
func TestHelperStress(t *testing.T) {
	if os.Getenv("SANDNET_HELPER") != "stress" {
		t.Skip("helper process for TestStressProcesses")
	}
	ctx := context.Background()
	h, err := NewHost(ctx, HostConfig{NetNS: os.Getenv("SANDNET_HOST"), StateDir: os.Getenv("SANDNET_STATE"), FirewallBackend: "iptables"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	prefix := os.Getenv("SANDNET_STRESS_PREFIX")
	seed, _ := strconv.ParseUint(os.Getenv("SANDNET_STRESS_SEED"), 10, 64)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for w := range stressWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var mine []*Endpoint
			for i := range stressOps {
				switch op := rng.IntN(10); {
				case op < 5 || len(mine) == 0: // attach
					name := fmt.Sprintf("%s-%d-%d", prefix, w, i)
					sb, err := netns.Create(ctx, name)
					if err != nil {
						fail(fmt.Errorf("creating %s: %w", name, err))
						continue
					}
					var o AttachOptions
					o.Hostname = fmt.Sprintf("h%d-%d", w, i)
					if rng.IntN(2) == 0 {
						spec := "80"
						if rng.IntN(2) == 0 {
							spec = fmt.Sprintf("%d:80", 20000+rng.IntN(40))
						}
						o.Ports, _ = ParsePort(spec)
					}
					ep, err := h.AttachNS(ctx, sb, stressNets[rng.IntN(len(stressNets))], o)
					sb.Close()
					switch {
					case err == nil:
						mine = append(mine, ep)
					case errors.Is(err, ErrInUse) && len(o.Ports) > 0 && o.Ports[0].HostPort != 0:
						netns.Delete(ctx, name) // the port was taken: expected
					default:
						fail(fmt.Errorf("attach %s: %w", name, err))
					}
				case op < 8: // detach
					j := rng.IntN(len(mine))
					if err := h.Detach(ctx, mine[j]); err != nil {
						fail(fmt.Errorf("detach %s: %w", mine[j].SandboxID, err))
					}
					netns.Delete(ctx, mine[j].SandboxID)
					mine = append(mine[:j], mine[j+1:]...)
				case op < 9: // crash: the namespace vanishes behind sandnet's back
					j := rng.IntN(len(mine))
					netns.Delete(ctx, mine[j].SandboxID)
					mine = append(mine[:j], mine[j+1:]...)
				default:
					if _, err := h.GC(ctx); err != nil {
						fail(fmt.Errorf("gc: %w", err))
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	fmt.Println("stress helper done")
}

// TestStressProcesses runs stressProcs processes of stressWorkers
// goroutines each, attaching, detaching, publishing ports and collecting
// on two networks at once; then checks the invariants (unique addresses,
// leases matching records, every live endpoint reaching its gateway,
// every sandnet rule owned by a live network or endpoint, no duplicate
// rule, port table matching the records), and, after detaching everything,
// zero residue.
func TestStressProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test skipped with -short")
	}
	ctx := context.Background()
	h := newTestHostFW(t, "iptables") // the test reads and breaks iptables rules
	prefix := fmt.Sprintf("snt-st%d", os.Getpid())
	t.Cleanup(func() {
		names, _ := netns.List()
		for _, n := range names {
			if strings.HasPrefix(n, prefix+"-") {
				netns.Delete(context.Background(), n)
			}
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	outs := make([][]byte, stressProcs)
	errs := make([]error, stressProcs)
	for p := range stressProcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStress$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "SANDNET_HELPER=stress", "SANDNET_HOST="+h.ns.Path(), "SANDNET_STATE="+h.dir,
				fmt.Sprintf("SANDNET_STRESS_PREFIX=%s-%d", prefix, p), fmt.Sprintf("SANDNET_STRESS_SEED=%d", time.Now().UnixNano()+int64(p)))
			outs[p], errs[p] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	t.Logf("%d processes × %d goroutines × %d operations: %v", stressProcs, stressWorkers, stressOps, time.Since(start).Round(time.Millisecond))
	for p := range stressProcs {
		out := string(outs[p])
		if strings.Contains(strings.ToLower(out), "xtables lock") {
			t.Errorf("process %d: an xtables lock error leaked:\n%s", p, out)
		}
		if errs[p] != nil || !strings.Contains(out, "stress helper done") {
			t.Errorf("process %d: %v\n%s", p, errs[p], out)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if _, err := h.GC(ctx); err != nil { // the "crashed" endpoints
		t.Fatal(err)
	}
	eps, err := h.Endpoints("")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d endpoints live after the stress", len(eps))
	checkStressInvariants(t, h, eps)

	for _, ep := range eps {
		if err := h.Detach(ctx, ep); err != nil {
			t.Error(err)
		}
	}
	if _, err := h.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if nets, _ := h.Networks(); len(nets) != 0 {
		t.Errorf("networks left: %v", nets)
	}
	if left := hostResidue(t, h); len(left) > 0 {
		t.Errorf("residue after detaching all: %v", left)
	}
	if left := sandnetRules(t, h.ns); len(left) > 0 {
		t.Errorf("rules after detaching all: %q", left)
	}
	if es := portEntries(t, h); len(es) > 0 {
		t.Errorf("port table after detaching all: %+v", es)
	}
	if out := testns.Run(t, h.ns, "ip", "-o", "link", "show", "type", "bridge"); strings.TrimSpace(out) != "" {
		t.Errorf("bridges after detaching all: %s", out)
	}
}

var ruleOwner = regexp.MustCompile(`sandnet net=(\S+)(?: ep=(\S+))?`)

func checkStressInvariants(t *testing.T, h *Host, eps []*Endpoint) {
	t.Helper()
	addrs := map[netip.Addr]string{}
	live := map[string]bool{} // "network/endpoint ID"
	for _, ep := range eps {
		live[ep.Network+"/"+ep.ID] = true
		for _, p := range ep.Addresses {
			if other, ok := addrs[p.Addr()]; ok {
				t.Errorf("address %s held by %s and %s", p.Addr(), other, ep.SandboxID)
			}
			addrs[p.Addr()] = ep.SandboxID
		}
		l, err := h.ipam.Get(leaseKey(ep))
		if err != nil || fmt.Sprint(l.Addrs) != fmt.Sprint(ep.Addresses) {
			t.Errorf("lease of %s = %v, %v; record says %v", ep.SandboxID, l.Addrs, err, ep.Addresses)
		}
		sb, err := netns.Open(ep.NetNS)
		if err != nil {
			t.Errorf("live endpoint %s: %v", ep.SandboxID, err)
			continue
		}
		if err := testns.Ping(sb, ep.Gateway.String()); err != nil {
			t.Errorf("%s does not reach its gateway %s: %v", ep.SandboxID, ep.Gateway, err)
		}
		sb.Close()
	}
	nets := map[string]bool{}
	recs, _ := h.Networks()
	for _, n := range recs {
		nets[n.Name] = true
		leases, _ := h.ipam.List(n.Name)
		for _, l := range leases {
			if !live[n.Name+"/"+endpointID(n.Name, l.Sandbox, l.Interface)] {
				t.Errorf("lease %s %v held by no endpoint", l.Key, l.Addrs)
			}
		}
	}
	rules := savedRules(t, h.ns)
	for _, l := range rules {
		m := ruleOwner.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		net, ep := m[1], strings.TrimRight(m[2], `"`)
		if !nets[strings.TrimRight(net, `"`)] {
			t.Errorf("rule of no network: %s", l)
		}
		if ep != "" && !live[net+"/"+ep] {
			t.Errorf("rule of no live endpoint: %s", l)
		}
	}
	if d := duplicateRules(rules); len(d) > 0 {
		t.Errorf("duplicate rules: %q", d)
	}
	held := 0
	for _, e := range portEntries(t, h) {
		if !live[e.Holder.Network+"/"+e.Holder.Endpoint] {
			t.Errorf("port table entry of no live endpoint: %+v", e)
		}
		held++
	}
	want := 0
	for _, ep := range eps {
		want += len(ep.Ports)
		for _, p := range ep.Ports {
			if !strings.Contains(strings.Join(rules, "\n"), fmt.Sprintf("ep=%s tcp/*:%d", ep.ID, p.HostPort)) {
				t.Errorf("no DNAT rule for %s port %d", ep.SandboxID, p.HostPort)
			}
		}
	}
	if held != want {
		t.Errorf("port table holds %d ports, records %d", held, want)
	}
}
