package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/internal/testns"
)

// TestHelpEverywhere: --help and -h work for every command listed by
// sandnet --help and for every subcommand of ns and net, and show examples.
func TestHelpEverywhere(t *testing.T) {
	bin := sandnetBin(t)
	for _, cmd := range helpCommands(t) {
		for _, flag := range []string{"--help", "-h"} {
			args := append(strings.Fields(cmd), flag)
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "Usage: sandnet ") || !strings.Contains(string(out), "\nExamples:\n  sandnet ") {
				t.Errorf("sandnet %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
	if out, err := exec.Command(bin, "--help").Output(); err != nil || !strings.Contains(string(out), "doctor NS") {
		t.Errorf("sandnet --help: %v\n%s", err, out)
	}
}

// helpCommands lists the commands of sandnet --help, with each subcommand
// of a group ("ns add|del|ls|exec") and the group itself.
func helpCommands(t *testing.T) []string {
	_, list, ok := strings.Cut(topUsage, "Commands:\n")
	if !ok {
		t.Fatal("sandnet --help lists no commands")
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var cmds []string
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		cmds = append(cmds, f[0])
		if len(f) > 1 && strings.Contains(f[1], "|") {
			for _, sub := range strings.Split(f[1], "|") {
				cmds = append(cmds, f[0]+" "+sub)
			}
		}
	}
	if len(cmds) < 10 {
		t.Fatalf("sandnet --help lists only %v", cmds)
	}
	return cmds
}

// The lab every --help example runs in: a private mount, network and PID
// namespace with its own /run/netns, /run/sandnet, /etc/netns and /dev/shm
// (where /run is not tmpfs, the files of /etc/netns/NAME live there), where
//   - lab plays the host: its eth0 (192.0.2.1/24, also a macvlan parent) is
//     cabled to lab2's (192.0.2.2/24), a second host for the overlay;
//   - sbx2 holds a process whose PID is 4242 (the examples' pid:4242);
//   - unless the example makes them itself: namespace sbx1, network n1
//     (10.88.0.0/24) on lab, and sbx1 attached to n1 with the name web.
const exampleLab = `set -euo pipefail
mkdir -p /run/netns /run/sandnet /etc/netns /dev/shm
for d in /run/netns /run/sandnet /etc/netns /dev/shm; do mount -t tmpfs sandnet-help-example "$d"; done
ip link set lo up
ip netns add lab; ip netns add lab2; ip netns add sbx2
ip -n lab link add eth0 type veth peer name eth0 netns lab2
ip -n lab addr add 192.0.2.1/24 dev eth0; ip -n lab2 addr add 192.0.2.2/24 dev eth0
for n in lab lab2; do ip -n $n link set eth0 up; ip -n $n link set lo up; done
echo 4241 > /proc/sys/kernel/ns_last_pid
ip netns exec sbx2 sleep 1000 &
[ "$!" = 4242 ] || { echo "lab: the process in sbx2 is $!, not 4242" >&2; exit 99; }
`

// overlayProof, after the overlay example made network ov on lab with peer
// 192.0.2.2: its underlay is lab's route source; lab2 makes the same
// network the other way round, and a sandbox on each host talks to the
// other over it (HTTP from lab's sandbox to lab2's).
const overlayProof = `
sandnet --host-ns lab net ls --json | grep -q '"underlay": "192.0.2.1"' || { echo "ov's underlay is not 192.0.2.1" >&2; exit 1; }
sandnet --host-ns lab2 net create ov --driver overlay --vni 42 --subnet 10.90.0.0/24 --peer 192.0.2.1
sandnet --host-ns lab2 run --net ov --ip 10.90.0.20 -- python3 -m http.server --bind 10.90.0.20 8000 >/dev/null 2>&1 &
srv=$!
sandnet --host-ns lab run --net ov --ip 10.90.0.10 -- curl -sS --retry 30 --retry-connrefused --retry-delay 1 --max-time 5 -o /dev/null -w 'overlay: HTTP %{http_code} from 10.90.0.20\n' http://10.90.0.20:8000/
kill -TERM $srv; wait $srv || true
`

// TestHelpExamples runs every example of every command's --help, as
// written, in a fresh private lab (exampleLab): each must exit 0. The
// overlay example is also proved to make a working overlay between two
// lab hosts.
func TestHelpExamples(t *testing.T) {
	testns.RequireRoot(t)
	testns.NeedProgram(t, "running the --help examples in a private lab", "unshare")
	bin := sandnetBin(t)
	pathDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(pathDir, "sandnet")); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, cmd := range helpCommands(t) {
		out, err := exec.Command(bin, append(strings.Fields(cmd), "--help")...).Output()
		if err != nil {
			t.Fatalf("sandnet %s --help: %v", cmd, err)
		}
		_, ex, _ := strings.Cut(string(out), "\nExamples:\n")
		for _, l := range strings.Split(ex, "\n") {
			example, ok := strings.CutPrefix(l, "  sandnet ")
			if !ok || seen[example] {
				continue
			}
			seen[example] = true
			t.Run(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(example, "_"), func(t *testing.T) {
				runExample(t, pathDir, "sandnet "+example)
			})
		}
	}
	if len(seen) < 20 {
		t.Errorf("only %d examples found in the --help texts", len(seen))
	}
}

func runExample(t *testing.T, pathDir, example string) {
	for _, prog := range []string{"jq", "dot"} {
		if strings.Contains(example, "| "+prog+" ") {
			testns.NeedProgram(t, "the example pipes into "+prog, prog)
		}
	}
	makesSbx1 := strings.Contains(example, " ns add sbx1")
	makesN1 := strings.Contains(example, " net create n1 ")
	script := exampleLab
	if !makesSbx1 {
		script += "ip netns add sbx1\n"
	}
	if !makesN1 {
		script += "sandnet --host-ns lab net create n1 --subnet 10.88.0.0/24 >/dev/null\n"
	}
	if !makesSbx1 && !makesN1 && !strings.Contains(example, " attach sbx1 ") && !strings.Contains(example, " net rm n1") {
		script += "sandnet --host-ns lab attach sbx1 --net n1 --name web >/dev/null\n"
	}
	script += "echo '$ " + strings.ReplaceAll(example, "'", `'\''`) + "'\n" + example + "\n"
	if strings.Contains(example, "--driver overlay") {
		script += overlayProof
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private", "bash", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PATH="+pathDir+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s: %v\n%s", example, err, out)
		return
	}
	t.Logf("%s", out)
	if strings.Contains(example, "--driver overlay") && !strings.Contains(string(out), "overlay: HTTP 200") {
		t.Errorf("the overlay example made no working overlay:\n%s", out)
	}
}
