package sandnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/nat"
)

// The port table on its own: claims and releases against the state dir,
// with endpoint records but no kernel objects (the NAT e2e tests cover
// the rules that go with them).

// portEndpoint makes an endpoint of network "ports" with a record, as the
// claim step of Attach leaves it.
func portEndpoint(t *testing.T, h *Host, sandbox string) *Endpoint {
	t.Helper()
	ep := &Endpoint{Network: "ports", SandboxID: sandbox, IfName: "eth0", ID: endpointID("ports", sandbox, "eth0")}
	if err := statefile.MkdirAll(h.endpointDir(ep.Network)); err != nil {
		t.Fatal(err)
	}
	if err := statefile.WriteJSON(h.endpointPath(ep.Network, ep.ID), endpointRecord{Version: stateVersion, State: stateAttaching, Endpoint: *ep}); err != nil {
		t.Fatal(err)
	}
	return ep
}

func claim(h *Host, ep *Endpoint, specs ...string) ([]PortMapping, error) {
	var ports []PortMapping
	for _, s := range specs {
		p, err := ParsePort(s)
		if err != nil {
			return nil, err
		}
		ports = append(ports, p...)
	}
	return h.claimPorts(context.Background(), ep, ports, func([]PortMapping) error { return nil })
}

func hostPorts(ps []PortMapping) []int {
	var out []int
	for _, p := range ps {
		out = append(out, int(p.HostPort))
	}
	return out
}

func TestPortTableConflictsAndRecord(t *testing.T) {
	h := newTestHost(t)
	a, b := portEndpoint(t, h, "a"), portEndpoint(t, h, "b")
	got, err := claim(h, a, "8080:80", "127.0.0.1:9090:90/udp")
	if err != nil {
		t.Fatal(err)
	}
	// The record lists the ports before the table does: a crash in between
	// leaves a Detach or GC what to clean.
	rec, err := h.readEndpoint(a.Network, a.ID)
	if err != nil || !slices.Equal(rec.Endpoint.Ports, got) {
		t.Fatalf("record ports = %v (%v), want %v", rec.Endpoint.Ports, err, got)
	}
	for _, c := range []struct {
		spec     string
		conflict bool
	}{
		{"8080:80", true},
		{"10.0.0.1:8080:80", true},  // under a's wildcard
		{"[fd00::1]:8080:80", true}, // the wildcard covers both families
		{"8080:80/udp", false},
		{"9090:90/udp", true},
		{"127.0.0.2:9090:90/udp", false},
		{"[fd00::1]:9090:90/udp", false},
		{"9090:90", false},
	} {
		_, err := claim(h, b, c.spec)
		var pc *PortConflictError
		if c.conflict != errors.As(err, &pc) {
			t.Errorf("b claims %s: %v, want conflict %v", c.spec, err, c.conflict)
			continue
		}
		if c.conflict && (pc.Holder != holderOf(a) || !errors.Is(err, ErrInUse)) {
			t.Errorf("b claims %s: conflict names %+v", c.spec, pc.Holder)
		}
		if !c.conflict {
			if err := h.releasePorts(context.Background(), b, mustPorts(t, c.spec)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Two mappings of one endpoint on the same host port conflict too.
	if _, err := claim(h, b, "7070:70", "7070:71"); !errors.Is(err, ErrInUse) {
		t.Errorf("one endpoint publishing 7070 twice: %v", err)
	}
	if held, err := h.portsHeld(context.Background(), a, got); err != nil || !slices.Equal(held, got) {
		t.Errorf("portsHeld(a) = %v, %v", held, err)
	}
	if err := h.releasePorts(context.Background(), a, got); err != nil {
		t.Fatal(err)
	}
	if es := portEntries(t, h); len(es) != 0 {
		t.Errorf("entries left after releasing everything: %+v", es)
	}
	if _, err := claim(h, b, "8080:80"); err != nil {
		t.Errorf("8080 after a released it: %v", err)
	}
}

// TestPortTableFreePorts: ports without a host port get free ones from
// 49153 on, going round the range without handing out a held one, and a
// released port is not handed out again at once.
func TestPortTableFreePorts(t *testing.T) {
	h := newTestHost(t)
	a := portEndpoint(t, h, "a")
	got, err := claim(h, a, "80", "81", "81/udp")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{49153, 49154, 49153}; !slices.Equal(hostPorts(got), want) {
		t.Errorf("free ports %v, want %v", hostPorts(got), want)
	}
	h.releasePorts(context.Background(), a, got)
	b := portEndpoint(t, h, "b")
	if got, _ := claim(h, b, "80"); !slices.Equal(hostPorts(got), []int{49155}) {
		t.Errorf("after a release: %v, want [49155]", hostPorts(got))
	}
	// Near the end of the range the cursor wraps and skips held ports.
	statefile.Write(h.nextPortPath("tcp"), []byte(strconv.Itoa(lastFreePort)+"\n"))
	c := portEndpoint(t, h, "c")
	if _, err := claim(h, c, "49153:1"); err != nil {
		t.Fatal(err)
	}
	d := portEndpoint(t, h, "d")
	if got, _ := claim(h, d, "80", "80"); !slices.Equal(hostPorts(got), []int{lastFreePort, 49154}) {
		t.Errorf("wrapping round: %v, want [%d 49154]", hostPorts(got), lastFreePort)
	}
}

// TestPortTableStale: an entry whose endpoint record is gone (a crashed
// attach) does not block the port, and GC drops it.
func TestPortTableStale(t *testing.T) {
	h := newTestHost(t)
	a := portEndpoint(t, h, "a")
	if _, err := claim(h, a, "8080:80", "8081:81"); err != nil {
		t.Fatal(err)
	}
	os.Remove(h.endpointPath(a.Network, a.ID))
	b := portEndpoint(t, h, "b")
	if _, err := claim(h, b, "8080:80"); err != nil {
		t.Fatalf("claiming a stale entry's port: %v", err)
	}
	rep, err := h.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Ports) != 1 || rep.Ports[0] != "8081:81/tcp held by ports/a" {
		t.Errorf("GC dropped %q, want a's 8081", rep.Ports)
	}
	es := portEntries(t, h)
	if len(es) != 1 || es[0].Holder != holderOf(b) {
		t.Errorf("entries after GC: %+v", es)
	}
}

// TestPortTableMigrates: the single ports.json of earlier versions is moved
// into one file per port on first use; its stale entries are dropped.
func TestPortTableMigrates(t *testing.T) {
	h := newTestHost(t)
	a := portEndpoint(t, h, "a")
	old := portFile{Version: 1, Ports: []portEntry{
		{Port: mustPorts(t, "8080:80")[0], Holder: holderOf(a)},
		{Port: mustPorts(t, "8081:80")[0], Holder: nat.Holder{Network: "ports", Sandbox: "gone", Endpoint: "0123456789abcdef"}},
	}}
	for i := range old.Ports {
		old.Ports[i].Port.Proto = "tcp"
	}
	if err := statefile.WriteJSON(filepath.Join(h.dir, "ports.json"), old); err != nil {
		t.Fatal(err)
	}
	b := portEndpoint(t, h, "b")
	if _, err := claim(h, b, "8080:80"); !errors.Is(err, ErrInUse) {
		t.Errorf("8080, held in the old table: %v", err)
	}
	if _, err := claim(h, b, "8081:80"); err != nil {
		t.Errorf("8081, stale in the old table: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "ports.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ports.json still there: %v", err)
	}
}

// TestPortTableConcurrent: goroutines claiming one port: one wins; free
// ports picked at once are all different.
func TestPortTableConcurrent(t *testing.T) {
	h := newTestHost(t)
	const n = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		won   int
		picks = map[uint16]int{}
	)
	for i := range n {
		ep := portEndpoint(t, h, fmt.Sprintf("s%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := claim(h, ep, "8080:80")
			got, err2 := claim(h, ep, "80")
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won++
			} else if !errors.Is(err, ErrInUse) {
				t.Errorf("claim: %v", err)
			}
			if err2 != nil {
				t.Errorf("free port: %v", err2)
				return
			}
			picks[got[0].HostPort]++
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d goroutines won port 8080", won)
	}
	if len(picks) != n {
		t.Errorf("free ports handed out: %v, want %d different", picks, n)
	}
}

// TestPortTableReclaim: an endpoint claiming its host port again with
// another mapping (an attach retried after a crash) replaces its entry.
func TestPortTableReclaim(t *testing.T) {
	h := newTestHost(t)
	a := portEndpoint(t, h, "a")
	for _, spec := range []string{"8080:80", "8080:81", "8080:81"} {
		if _, err := claim(h, a, spec); err != nil {
			t.Fatalf("a claims %s: %v", spec, err)
		}
	}
	es := portEntries(t, h)
	if len(es) != 1 || es[0].Port.ContainerPort != 81 {
		t.Errorf("entries %+v, want a's 8080:81 alone", es)
	}
}
