package sandnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/dns"
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
	h.stepHook = func(step Step) error {
		if string(step) == stop {
			fmt.Println("stopped at", step)
			select {} // wait for SIGKILL
		}
		return nil
	}
	ports, err := ParsePort(crashPort)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Attach(context.Background(), os.Getenv("SANDNET_SANDBOX"), crashNet, AttachOptions{Hostname: "crashy", Aliases: []string{"c"}, Ports: ports})
	fmt.Println("attach returned", err)
}

// crashPort is the port the crashing attach publishes.
const crashPort = "18300:80"

var crashNet = Network{Name: "crash", Subnet: netip.MustParsePrefix("10.99.0.0/29"), Subnet6: netip.MustParsePrefix("fd00:99::/64")}

// TestCrashMatrixSIGKILL kills a process running Attach at each step in turn
// and checks that GC then leaves nothing behind and a fresh Attach works.
func TestCrashMatrixSIGKILL(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	if _, err := h.CreateNetwork(ctx, crashNet); err != nil {
		t.Fatal(err)
	}
	// A witness stays attached throughout: it asks the name server for the
	// crashed attach's names, and its own objects make the baseline.
	witness := testns.New(t, "witness")
	wep := mustAttach(t, h, witness, crashNet, AttachOptions{Hostname: "witness"})
	baseRes, baseRules := hostResidue(t, h), sandnetRules(t, h.ns)
	dnsServer := netip.AddrPortFrom(wep.Gateway, 53)
	crashPorts, _ := ParsePort(crashPort)
	for _, step := range []Step{StepClaim, StepAddress, StepLink, StepConfigure, StepDNS, StepPorts, StepRecord} {
		sb := testns.New(t, "kill")
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashingAttach$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "SANDNET_HELPER=crash", "SANDNET_HOST="+h.ns.Path(), "SANDNET_STATE="+h.dir,
			"SANDNET_SANDBOX="+sb.Name(), "SANDNET_STOP_AT="+string(step))
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
			if line != "stopped at "+string(step) {
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

		if _, err := h.GC(ctx); err != nil {
			t.Fatalf("GC after SIGKILL at %s: %v", step, err)
		}
		if left := hostResidue(t, h); fmt.Sprint(left) != fmt.Sprint(baseRes) {
			t.Errorf("SIGKILL at %s, then GC: left %v (baseline %v)", step, left, baseRes)
		}
		if _, err := os.Lstat(filepath.Join(dns.NetnsDir, sb.Name())); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("SIGKILL at %s, then GC: /etc/netns/%s left (%v)", step, sb.Name(), err)
		}
		if _, err := os.Lstat(filepath.Join(dns.NetnsHomeDir(), sb.Name())); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("SIGKILL at %s, then GC: the files of /etc/netns/%s left in %s (%v)", step, sb.Name(), dns.NetnsHomeDir(), err)
		}
		if out := testns.Run(t, sb, "ip", "-o", "link"); strings.Contains(out, "eth0") {
			t.Errorf("SIGKILL at %s, then GC: eth0 still in the sandbox", step)
		}
		if rules := sandnetRules(t, h.ns); !slices.Equal(rules, baseRules) {
			a, b := diffLines(baseRules, rules)
			t.Errorf("SIGKILL at %s, then GC: rules differ: missing %q, left %q", step, a, b)
		}
		if es := portEntries(t, h); len(es) > 0 {
			t.Errorf("SIGKILL at %s, then GC: port table %+v", step, es)
		}
		for _, name := range []string{"crashy", "c", sb.Name()} {
			if got, err := queryA(ctx, witness, dnsServer, name); err == nil {
				t.Errorf("SIGKILL at %s, then GC: name %s still answers %v", step, name, got)
			}
		}
		ep, err := h.AttachNS(ctx, sb, crashNet, AttachOptions{Hostname: "crashy", Ports: crashPorts})
		if err != nil {
			t.Fatalf("fresh attach after SIGKILL at %s: %v", step, err)
		}
		if !crashNet.Subnet.Contains(ep.Addr(false)) || ep.Addr(false) == wep.Addr(false) {
			t.Errorf("fresh attach after SIGKILL at %s got %v", step, ep.Addresses)
		}
		if got, err := queryA(ctx, witness, dnsServer, "crashy"); err != nil || len(got) != 1 || got[0] != ep.Addr(false) {
			t.Errorf("fresh attach after SIGKILL at %s: crashy = %v, %v", step, got, err)
		}
		if err := h.Detach(context.Background(), ep); err != nil {
			t.Fatal(err)
		}
	}
}
