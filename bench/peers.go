package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ---- CNI reference plugins, exec'd the way a runtime (libcni) does ----

// cniDir is where Debian's containernetworking-plugins installs them.
var cniDir = "/usr/lib/cni"

func cniMissing() string {
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniDir, p)); err != nil {
			return fmt.Sprintf("CNI plugin %s not found in %s (Debian: apt-get install containernetworking-plugins)", p, cniDir)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return "iptables not found (the CNI bridge and portmap plugins exec it)"
	}
	return ""
}

type cniSession struct {
	lab     *lab
	dir     string           // looked in first for a plugin, then cniDir
	plugins []map[string]any // the conflist's chain: bridge, then portmap when ports are on
	results [][]byte         // the chain's final result per sandbox, cached for DEL as libcni does
}

// cniMasq turns on the bridge plugin's per-sandbox masquerade (-cni-ipmasq).
var cniMasq = false

const cniVersion = "1.0.0"

func startCNI(ctx context.Context, l *lab) (session, error) {
	s := &cniSession{lab: l, dir: cniDir, results: make([][]byte, len(l.sbx))}
	s.plugins = append(s.plugins, map[string]any{
		"type":      "bridge",
		"bridge":    "cni-bench0",
		"isGateway": true,
		"ipMasq":    cniMasq,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": subnet.String(), "gateway": gateway.String()}}},
			"dataDir": filepath.Join(l.dir, "host-local"),
		},
	})
	if l.ports {
		s.plugins = append(s.plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	}
	return s, nil
}

func (s *cniSession) id(i int) string { return fmt.Sprintf("bench%06d", i) }

// conf is plugin p's stdin: its entry of the conflist, with the list's name
// and version, the previous result, and runtimeConfig for its capabilities.
func (s *cniSession) conf(p map[string]any, i int, prev []byte) []byte {
	c := map[string]any{"cniVersion": cniVersion, "name": "bench"}
	for k, v := range p {
		c[k] = v
	}
	if prev != nil {
		c["prevResult"] = json.RawMessage(prev)
	}
	if caps, ok := p["capabilities"].(map[string]bool); ok && caps["portMappings"] {
		c["runtimeConfig"] = map[string]any{"portMappings": []map[string]any{
			{"hostPort": hostPort(i), "containerPort": containerPort, "protocol": "tcp"},
		}}
	}
	return mustJSON(c)
}

func (s *cniSession) exec(ctx context.Context, cmd string, p map[string]any, i int, prev []byte) ([]byte, error) {
	env := []string{
		"CNI_COMMAND=" + cmd,
		"CNI_CONTAINERID=" + s.id(i),
		"CNI_NETNS=" + s.lab.path(i),
		"CNI_IFNAME=eth0",
		"CNI_PATH=" + s.dir + ":" + cniDir,
	}
	path := filepath.Join(s.dir, p["type"].(string))
	if _, err := os.Stat(path); err != nil {
		path = filepath.Join(cniDir, p["type"].(string))
	}
	return runIn(ctx, s.lab.host, s.conf(p, i, prev), env, path)
}

func (s *cniSession) attach(ctx context.Context, i int) error {
	var prev []byte
	for _, p := range s.plugins {
		out, err := s.exec(ctx, "ADD", p, i, prev)
		if err != nil {
			return err
		}
		prev = out
	}
	s.results[i] = prev
	return nil
}

// detach runs DEL through the chain in reverse, each with the cached result.
func (s *cniSession) detach(ctx context.Context, i int) error {
	for j := len(s.plugins) - 1; j >= 0; j-- {
		if _, err := s.exec(ctx, "DEL", s.plugins[j], i, s.results[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *cniSession) finish(ctx context.Context) (string, error) {
	return peerLeft(ctx, s.lab), nil
}

// ---- netavark, exec'd the way podman does ----

var netavarkPaths = []string{"/usr/bin/netavark", "/usr/libexec/podman/netavark", "/usr/lib/podman/netavark"}

func netavarkPath() string {
	if p, err := exec.LookPath("netavark"); err == nil {
		return p
	}
	for _, p := range netavarkPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func netavarkMissing() string {
	if netavarkPath() == "" {
		return "netavark not found (Debian: apt-get install netavark)"
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return "iptables not found (netavark's iptables driver execs it)"
	}
	return ""
}

type netavarkSession struct {
	lab  *lab
	bin  string
	conf string
}

func startNetavark(ctx context.Context, l *lab) (session, error) {
	s := &netavarkSession{lab: l, bin: netavarkPath(), conf: filepath.Join(l.dir, "netavark")}
	return s, os.MkdirAll(s.conf, 0o700)
}

// opts is the network-options JSON podman passes on stdin: the container,
// its static address (podman does the IPAM), its ports, and the network.
func (s *netavarkSession) opts(i int) []byte {
	o := map[string]any{
		"container_id":   fmt.Sprintf("%064x", i+1),
		"container_name": fmt.Sprintf("bench%d", i),
		"networks": map[string]any{
			"bench": map[string]any{"static_ips": []string{staticIP(i).String()}, "interface_name": "eth0"},
		},
		"network_info": map[string]any{
			"bench": map[string]any{
				"name":              "bench",
				"id":                "be0c0be0c0be0c0be0c0be0c0be0c0be0c0be0c0be0c0be0c0be0c0be0c0be0",
				"driver":            "bridge",
				"network_interface": "nv-bench0",
				"subnets":           []map[string]string{{"subnet": subnet.String(), "gateway": gateway.String()}},
				"ipv6_enabled":      false,
				"internal":          false,
				"dns_enabled":       false,
				"ipam_options":      map[string]string{"driver": "host-local"},
			},
		},
	}
	if s.lab.ports {
		o["port_mappings"] = []map[string]any{
			{"host_ip": "", "container_port": containerPort, "host_port": hostPort(i), "range": 1, "protocol": "tcp"},
		}
	}
	return mustJSON(o)
}

func (s *netavarkSession) run(ctx context.Context, cmd string, i int) error {
	_, err := runIn(ctx, s.lab.host, s.opts(i), nil, s.bin, "--config", s.conf, cmd, s.lab.path(i))
	return err
}

func (s *netavarkSession) attach(ctx context.Context, i int) error { return s.run(ctx, "setup", i) }
func (s *netavarkSession) detach(ctx context.Context, i int) error { return s.run(ctx, "teardown", i) }

func (s *netavarkSession) finish(ctx context.Context) (string, error) {
	return peerLeft(ctx, s.lab), nil
}

// peerLeft says what a peer left in the lab host after its last teardown.
func peerLeft(ctx context.Context, l *lab) string {
	var left []string
	if n := veths(l.host); n > 0 {
		left = append(left, fmt.Sprintf("%d veth(s)", n))
	}
	return leftNote(append(left, firewallLeft(ctx, l.host)...))
}
