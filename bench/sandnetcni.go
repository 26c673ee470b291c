package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// ---- sandnet as a CNI plugin, exec'd exactly as the reference plugins ----

// sandnetCNI is the plugin binary (-sandnet-cni); built once if not given.
var (
	sandnetCNI    string
	buildOnce     sync.Once
	buildErr      error
	sandnetCNIDir string
)

func sandnetCNIMissing() string {
	if sandnetCNI != "" {
		if _, err := os.Stat(sandnetCNI); err != nil {
			return fmt.Sprintf("-sandnet-cni %s: %v", sandnetCNI, err)
		}
		return ""
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "go not found to build ./cmd/sandnet-cni (or pass -sandnet-cni PATH)"
	}
	return ""
}

// pluginBuild is how the README installs the plugin, and so how the bench
// builds it: a static binary (no cgo: no dynamic loader and C library to
// start on every call, as the reference plugins are built), without a
// symbol table.
var pluginBuild = []string{"CGO_ENABLED=0", "go", "build", "-ldflags=-s"}

// pluginDir returns a directory holding the plugin as "sandnet", building
// it as the README says (pluginBuild) the first time.
func pluginDir(scratch string) (string, error) {
	buildOnce.Do(func() {
		sandnetCNIDir, buildErr = os.MkdirTemp(scratch, "sandnet-cni-bin-")
		if buildErr != nil {
			return
		}
		dst := filepath.Join(sandnetCNIDir, "sandnet")
		if sandnetCNI != "" {
			buildErr = os.Symlink(sandnetCNI, dst)
			return
		}
		cmd := exec.Command(pluginBuild[1], append(pluginBuild[2:], "-o", dst, "github.com/sandnet/sandnet/cmd/sandnet-cni")...)
		cmd.Env = append(os.Environ(), pluginBuild[0])
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building the plugin: %v: %s", err, out)
		}
	})
	return sandnetCNIDir, buildErr
}

// startSandnetCNI: a one-plugin conflist of type sandnet with the
// portMappings capability (no portmap needed), its state dir in the
// scratch dir, run through the same exec path as the reference plugins.
func startSandnetCNI(ctx context.Context, l *lab) (session, error) {
	dir, err := pluginDir(filepath.Dir(l.dir))
	if err != nil {
		return nil, err
	}
	s := &cniSession{lab: l, dir: dir, results: make([][]byte, len(l.sbx))}
	p := map[string]any{
		"type":     "sandnet",
		"subnet":   subnet.String(),
		"gateway":  gateway.String(),
		"stateDir": filepath.Join(l.dir, "state"),
	}
	if l.ports {
		p["capabilities"] = map[string]bool{"portMappings": true}
	}
	s.plugins = []map[string]any{p}
	return &sandnetCNISession{s}, nil
}

type sandnetCNISession struct{ *cniSession }

// finish runs the runtime's GC with no valid attachment (untimed): it
// removes the network sandnet created implicitly on the first ADD (bridge
// and rules; the reference bridge plugin leaves its bridge), then counts
// what is left as for the other peers, and sandnet's leases.
func (s *sandnetCNISession) finish(ctx context.Context) (string, error) {
	c := map[string]any{"cniVersion": "1.1.0", "name": "bench", "cni.dev/valid-attachments": []any{}}
	for k, v := range s.plugins[0] {
		c[k] = v
	}
	env := []string{"CNI_COMMAND=GC", "CNI_PATH=" + s.dir + ":" + cniDir}
	if _, err := runIn(ctx, s.lab.host, mustJSON(c), env, filepath.Join(s.dir, "sandnet")); err != nil {
		return "", err
	}
	note := peerLeft(ctx, s.lab)
	if leases, _ := os.ReadDir(filepath.Join(s.lab.dir, "state", "ipam", "bench")); len(leases) > 0 {
		note = strings.TrimSpace(note + fmt.Sprintf(" %d lease file(s)", len(leases)))
	}
	return note, nil
}
