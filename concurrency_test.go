package sandnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

var busy = Network{Name: "busy", Subnet: netip.MustParsePrefix("10.97.0.0/24")}

// checkDistinctAndReachable asserts every endpoint has its own address and
// reaches the gateway from inside its sandbox.
func checkDistinctAndReachable(t *testing.T, eps []*Endpoint, sandboxes map[string]*netns.NS) {
	t.Helper()
	seen := map[netip.Addr]string{}
	for _, ep := range eps {
		a := ep.Addr(false)
		if other, dup := seen[a]; dup {
			t.Errorf("address %s handed to %s and %s", a, other, ep.SandboxID)
		}
		seen[a] = ep.SandboxID
	}
	var wg sync.WaitGroup
	for _, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := testns.Ping(sandboxes[ep.SandboxID], ep.Gateway.String()); err != nil {
				t.Errorf("%s (%s) does not reach the gateway: %v", ep.SandboxID, ep.Addr(false), err)
			}
		}()
	}
	wg.Wait()
}

func TestConcurrentAttach50Goroutines(t *testing.T) {
	h := newTestHost(t)
	const n = 50
	sandboxes := map[string]*netns.NS{}
	var list []*netns.NS
	for i := range n {
		sb := testns.New(t, fmt.Sprintf("g%d", i))
		sandboxes[sb.Name()] = sb
		list = append(list, sb)
	}
	eps := make([]*Endpoint, n)
	var wg sync.WaitGroup
	for i, sb := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep, err := h.AttachNS(context.Background(), sb, busy, AttachOptions{})
			if err != nil {
				t.Errorf("attach %s: %v", sb, err)
				return
			}
			eps[i] = ep
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	checkDistinctAndReachable(t, eps, sandboxes)
	for _, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.Detach(context.Background(), ep); err != nil {
				t.Errorf("detach %s: %v", ep.SandboxID, err)
			}
		}()
	}
	wg.Wait()
	if left := hostResidue(t, h); len(left) > 0 {
		t.Errorf("left after detaching all: %v", left)
	}
}

// TestHelperAttachProcess is not a test: TestConcurrentAttach4Processes runs
// the test binary again with SANDNET_HELPER set, and this attaches the
// sandboxes it is given, printing the endpoints as JSON.
func TestHelperAttachProcess(t *testing.T) {
	if os.Getenv("SANDNET_HELPER") != "attach" {
		t.Skip("helper process for TestConcurrentAttach4Processes")
	}
	h, err := NewHost(context.Background(), HostConfig{NetNS: os.Getenv("SANDNET_HOST"), StateDir: os.Getenv("SANDNET_STATE")})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		eps []*Endpoint
		wg  sync.WaitGroup
	)
	for _, name := range strings.Fields(os.Getenv("SANDNET_SANDBOXES")) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep, err := h.Attach(context.Background(), name, busy, AttachOptions{})
			if err != nil {
				t.Errorf("attach %s: %v", name, err)
				return
			}
			mu.Lock()
			eps = append(eps, ep)
			mu.Unlock()
		}()
	}
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(eps)
}

func TestConcurrentAttach4Processes(t *testing.T) {
	h := newTestHost(t)
	const procs, per = 4, 12
	sandboxes := map[string]*netns.NS{}
	cmds := make([]*exec.Cmd, procs)
	outs := make([]strings.Builder, procs)
	for p := range procs {
		var names []string
		for i := range per {
			sb := testns.New(t, fmt.Sprintf("p%d-%d", p, i))
			sandboxes[sb.Name()] = sb
			names = append(names, sb.Name())
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAttachProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SANDNET_HELPER=attach", "SANDNET_HOST="+h.ns.Path(), "SANDNET_STATE="+h.dir,
			"SANDNET_SANDBOXES="+strings.Join(names, " "))
		cmd.Stdout, cmd.Stderr = &outs[p], &outs[p]
		cmds[p] = cmd
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var eps []*Endpoint
	for p, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", p, err, outs[p].String())
		}
		line := strings.SplitN(outs[p].String(), "\n", 2)[0]
		var got []*Endpoint
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("helper %d output: %v\n%s", p, err, outs[p].String())
		}
		eps = append(eps, got...)
	}
	if len(eps) != procs*per {
		t.Fatalf("got %d endpoints, want %d", len(eps), procs*per)
	}
	checkDistinctAndReachable(t, eps, sandboxes)
	recorded, err := h.Endpoints("busy")
	if err != nil || len(recorded) != procs*per {
		t.Fatalf("recorded endpoints: %d, %v", len(recorded), err)
	}
	for _, ep := range recorded {
		if err := h.DetachSandbox(context.Background(), "busy", ep.SandboxID); err != nil {
			t.Error(err)
		}
	}
	if left := hostResidue(t, h); len(left) > 0 {
		t.Errorf("left after detaching all: %v", left)
	}
}
