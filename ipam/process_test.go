package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The helper process: a child of TestMultiProcess or TestKilledProcesses.
const (
	helperEnv   = "SANDNET_IPAM_HELPER" // "allocate" or "churn"
	helperDir   = "SANDNET_IPAM_DIR"
	helperID    = "SANDNET_IPAM_ID"
	helperCount = 25
)

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("only run as a child process")
	}
	s, err := Open(os.Getenv(helperDir))
	if err != nil {
		t.Fatal(err)
	}
	id := os.Getenv(helperID)
	ctx := context.Background()
	pools := []Pool{v4Pool()}
	switch mode {
	case "allocate":
		for i := range helperCount {
			if _, err := s.Allocate(ctx, pools, key(fmt.Sprintf("p%s-%d", id, i))); err != nil {
				t.Fatal(err)
			}
		}
	case "churn": // until killed
		dual := append(pools, Pool{Subnet: pfx("fd00::/64")})
		for i := 0; ; i++ {
			k := key(fmt.Sprintf("p%s-%d", id, i%40))
			if err := s.Release(ctx, k); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Allocate(ctx, dual, k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func helper(t *testing.T, mode, dir string, id int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDir+"="+dir, helperID+"="+strconv.Itoa(id))
	return cmd
}

func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	const procs = 4
	var wg sync.WaitGroup
	for i := range procs {
		wg.Go(func() {
			if out, err := helper(t, "allocate", dir, i).CombinedOutput(); err != nil {
				t.Errorf("child %d: %v\n%s", i, err, out)
			}
		})
	}
	wg.Wait()

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := s.List("n1")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Prefix]bool{}
	for _, l := range leases {
		if seen[l.Addrs[0]] {
			t.Errorf("%v handed out twice", l.Addrs[0])
		}
		seen[l.Addrs[0]] = true
	}
	if len(leases) != procs*helperCount || len(seen) != procs*helperCount {
		t.Errorf("%d leases with %d distinct addresses, want %d", len(leases), len(seen), procs*helperCount)
	}
	if files := addrFiles(t, s.netDir("n1")); len(files) != procs*helperCount {
		t.Errorf("%d address files on disk, want %d", len(files), procs*helperCount)
	}
	// Sequential across processes too: exactly .2 .. .101.
	for a := addr("10.88.0.2"); a != addr("10.88.0.102"); a = a.Next() {
		if !seen[netip.PrefixFrom(a, 24)] {
			t.Errorf("%v not handed out", a)
		}
	}
}

// TestKilledProcesses kills processes with SIGKILL while they allocate and
// release, then checks that the store holds only whole leases and that GC
// leaves nothing else.
func TestKilledProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	for round := range 6 {
		var cmds []*exec.Cmd
		for i := range 3 {
			cmd := helper(t, "churn", dir, i)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		time.Sleep(time.Duration(20+round*15) * time.Millisecond)
		for _, cmd := range cmds {
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
		}
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := s.List("n1")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) == 0 {
		t.Fatal("no lease at all: the children did not get to work")
	}
	for _, l := range leases {
		got, err := s.Get(l.Key)
		if err != nil || !reflect.DeepEqual(got, l) {
			t.Errorf("Get(%s) = %+v, %v; List says %+v", l.Key, got, err, l)
		}
		if len(l.Addrs) != 2 {
			t.Errorf("lease %+v: want two addresses", l)
		}
	}
	if err := s.GC(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	after, err := s.List("n1")
	if err != nil || !reflect.DeepEqual(after, leases) {
		t.Errorf("GC changed the leases (%v)", err)
	}
	if files := addrFiles(t, s.netDir("n1")); len(files) != 2*len(leases) {
		t.Errorf("after GC: %d address files for %d dual-stack leases", len(files), len(leases))
	}
	t.Logf("%d whole leases after 18 kills", len(leases))
}
