package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/ipam"
	"github.com/sandnet/sandnet/netns"
)

// The tests drive the plugin the way runtimes do, through libcni: the test
// binary is the plugin (a file "sandnet" in the plugin dir links to it and
// TestMain runs main when it is exec'd as one), forked from a thread inside
// a private namespace that plays the node.

const envAsPlugin = "SANDNET_CNI_TEST_AS_PLUGIN"

// refPlugins is where Debian installs the reference plugins (host-local,
// portmap), used by the delegation and chaining tests.
const refPlugins = "/usr/lib/cni"

var pluginDir string

func TestMain(m *testing.M) {
	if os.Getenv(envAsPlugin) == "1" {
		main()
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "sandnet-cni-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	self, err := os.Executable()
	if err == nil {
		err = os.Symlink(self, filepath.Join(dir, "sandnet"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	os.Setenv(envAsPlugin, "1") // inherited by the plugin processes only: this one is past the check
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// nsExec is libcni's plugin executor, forking the plugin from a thread in
// the node namespace, as a runtime running in that namespace would.
type nsExec struct{ node *netns.NS }

func (e nsExec) ExecPlugin(ctx context.Context, path string, stdin []byte, env []string) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, bytes.NewReader(stdin), &out, &stderr
	err := e.node.Do(cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		te := &types.Error{}
		if json.Unmarshal(out.Bytes(), te) != nil || te.Msg == "" {
			te = &types.Error{Code: types.ErrInternal, Msg: fmt.Sprintf("%s: %v: %s %s", filepath.Base(path), err, out.String(), stderr.String())}
		}
		return nil, te
	}
	return out.Bytes(), nil
}

func (nsExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (nsExec) Decode(b []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(b)
}

// node is one machine running the plugin: a private namespace, a state
// dir, and libcni set up over them.
type node struct {
	t     testing.TB
	ns    *netns.NS
	state string
	cni   *libcni.CNIConfig
	exec  nsExec
}

func newNode(t testing.TB, tag string) *node {
	t.Helper()
	ns := testns.New(t, "cni"+tag)
	testns.Run(t, ns, "ip", "link", "set", "lo", "up")
	n := &node{t: t, ns: ns, state: t.TempDir(), exec: nsExec{ns}}
	// Runs after the DELs (registered later, run earlier) and before the
	// state dir goes: the name server's helper process, which the first
	// ADD with DNS on started, stops once nothing needs it; wait for that,
	// so it does not write into a state dir being removed.
	t.Cleanup(n.waitHelper)
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{pluginDir, refPlugins}, t.TempDir(), n.exec)
	return n
}

// host opens a sandnet Host over the node's state, as the CLI would, to
// look at what the plugin did.
func (n *node) host() *sandnet.Host {
	n.t.Helper()
	h, err := sandnet.NewHostNS(n.ns, sandnet.HostConfig{StateDir: n.state, DNS: sandnet.DNSOff})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { h.Close() })
	return h
}

// conf is a sandnet plugin entry: the network keys given, the node's state
// dir, and the embedded name server off unless dns is given.
func (n *node) conf(keys map[string]any) map[string]any {
	c := map[string]any{"type": "sandnet", "stateDir": n.state, "dns": map[string]any{"enabled": false}}
	for k, v := range keys {
		c[k] = v
	}
	return c
}

// list makes a conflist of the plugins in cniVersion v.
func (n *node) list(name, v string, plugins ...map[string]any) *libcni.NetworkConfigList {
	n.t.Helper()
	b, err := json.Marshal(map[string]any{"cniVersion": v, "name": name, "plugins": plugins})
	if err != nil {
		n.t.Fatal(err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		n.t.Fatal(err)
	}
	return l
}

// sandbox makes a sandbox namespace and a runtime configuration for it.
func (n *node) sandbox(id string) (*netns.NS, *libcni.RuntimeConf) {
	n.t.Helper()
	ns := testns.New(n.t, "pod")
	return ns, &libcni.RuntimeConf{ContainerID: id, NetNS: ns.Path(), IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", id}, {"K8S_POD_NAMESPACE", "default"}}}
}

// add runs ADD through the list and fails the test on error; DEL runs in
// cleanup (idempotent, so a test that deleted already is fine).
func (n *node) add(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) types.Result {
	n.t.Helper()
	res, err := n.cni.AddNetworkList(context.Background(), l, rt)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", rt.ContainerID, err)
	}
	n.t.Cleanup(func() { n.cni.DelNetworkList(context.Background(), l, rt) })
	return res
}

// codeOf is the spec's error code of err (-1 if it is not a CNI error).
func codeOf(err error) int {
	var te *types.Error
	if errors.As(err, &te) {
		return int(te.Code)
	}
	return -1
}

// raw runs the plugin directly with a command, environment and stdin,
// for what libcni would not send.
func (n *node) raw(cmd string, stdin []byte, env ...string) ([]byte, error) {
	e := append(os.Environ(), "CNI_COMMAND="+cmd, "CNI_PATH="+pluginDir+":"+refPlugins)
	return n.exec.ExecPlugin(context.Background(), filepath.Join(pluginDir, "sandnet"), stdin, append(e, env...))
}

// veths counts the veth devices in the node namespace.
func (n *node) veths() int {
	n.t.Helper()
	out := testns.Run(n.t, n.ns, "ip", "-o", "link", "show", "type", "veth")
	return strings.Count(out, "\n")
}

// leases counts sandnet's leases on a network.
func (n *node) leases(network string) int {
	n.t.Helper()
	s, err := ipam.Open(filepath.Join(n.state, "ipam"))
	if err != nil {
		n.t.Fatal(err)
	}
	ls, err := s.List(network)
	if err != nil {
		n.t.Fatal(err)
	}
	return len(ls)
}

// sandboxNS opens a sandbox namespace by path for the rest of the test.
func (n *node) sandboxNS(path string) (*netns.NS, error) {
	ns, err := netns.Open(path)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { ns.Close() })
	return ns, nil
}

// waitHelper waits until the state dir's DNS helper process (if one was
// started) has exited, and ends it if it is still there after 10 s.
func (n *node) waitHelper() {
	b, err := os.ReadFile(filepath.Join(n.state, "dns", "helper.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for unix.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			n.t.Errorf("the DNS helper (pid %d) did not stop after the last DEL; ending it", pid)
			unix.Kill(pid, unix.SIGTERM)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
