package sandnet

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/testns"
)

// TestHelperCrashingAttach is not a test: TestCrashMatrixSIGKILL runs the
// test binary again with SANDNET_HELPER=crash, and this attaches one sandbox,
// stopping dead at the step named by SANDNET_STOP_AT until it is killed.
func TestHelperCrashingAttach(t *testing.T) {
	if os.Getenv("SANDNET_HELPER") != "crash" {
		t.Skip("helper process for TestCrashMatrixSIGKILL")
	}
	h, err := NewHost(context.Background(), HostConfig{NetNS: os.Getenv("SANDNET_HOST"), StateDir: os.Getenv("SANDNET_STATE")})
	if err != nil {
		t.Fatal(err)
	}
	stop := os.Getenv("SANDNET_STOP_AT")
	testHookStep = func(step string) error {
		if step == stop {
			fmt.Println("stopped at", step)
			select {} // wait for SIGKILL
		}
		return nil
	}
	_, err = h.Attach(context.Background(), os.Getenv("SANDNET_SANDBOX"), crashNet, AttachOptions{Hostname: "crashy", Aliases: []string{"c"}})
	fmt.Println("attach returned", err)
}

var crashNet = Network{Name: "crash", Subnet: netip.MustParsePrefix("10.99.0.0/29"), Subnet6: netip.MustParsePrefix("fd00:99::/64")}

// TestCrashMatrixSIGKILL kills a process running Attach at each step in turn
// and checks that GC then leaves nothing behind and a fresh Attach works.
func TestCrashMatrixSIGKILL(t *testing.T) {
	h := newTestHost(t)
	if _, err := h.CreateNetwork(context.Background(), crashNet); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{StepClaim, StepAddress, StepLink, StepConfigure, StepDNS, StepPorts, StepRecord} {
		sb := testns.New(t, "kill")
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashingAttach$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "SANDNET_HELPER=crash", "SANDNET_HOST="+h.ns.Path(), "SANDNET_STATE="+h.dir,
			"SANDNET_SANDBOX="+sb.Name(), "SANDNET_STOP_AT="+step)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		reached := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "stopped at") || strings.HasPrefix(sc.Text(), "attach returned") {
					reached <- sc.Text()
					return
				}
			}
			reached <- "exited"
		}()
		select {
		case line := <-reached:
			if line != "stopped at "+step {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("helper did not stop at %s: %s", step, line)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper never reached %s", step)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		if _, err := h.GC(context.Background()); err != nil {
			t.Fatalf("GC after SIGKILL at %s: %v", step, err)
		}
		if left := hostResidue(t, h); len(left) > 0 {
			t.Errorf("SIGKILL at %s, then GC: left %v", step, left)
		}
		if out := testns.Run(t, sb, "ip", "-o", "link"); strings.Contains(out, "eth0") {
			t.Errorf("SIGKILL at %s, then GC: eth0 still in the sandbox", step)
		}
		ep := mustAttach(t, h, sb, crashNet, AttachOptions{})
		if !crashNet.Subnet.Contains(ep.Addr(false)) {
			t.Errorf("fresh attach after SIGKILL at %s got %v", step, ep.Addresses)
		}
		if err := h.Detach(context.Background(), ep); err != nil {
			t.Fatal(err)
		}
	}
}
