package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/nat"
)

// The plugin is a fresh process per call, so "auto" would probe nf_tables
// on every call: one nftables transaction, the costliest part of starting
// (10 ms here). The first call's answer is kept in the state dir (on tmpfs:
// it goes at reboot, with everything else there) and later calls use it.

// firewallChoice is where the auto choice is kept.
func firewallChoice(stateDir string) string {
	if stateDir == "" {
		stateDir = sandnet.DefaultStateDir
	}
	return filepath.Join(stateDir, "cni-firewall")
}

// firewallBackend is the backend to ask NewHost for: the configured one,
// else the kept choice, else "" (auto: NewHost probes).
func (c *netConf) firewallBackend() string {
	if c.Firewall != "" {
		return c.Firewall
	}
	b, err := os.ReadFile(firewallChoice(c.StateDir))
	if err != nil {
		return ""
	}
	switch s := strings.TrimSpace(string(b)); s {
	case nat.BackendNFTables, nat.BackendIPTables:
		return s
	}
	return ""
}

// keepFirewallChoice records what auto chose, once.
func (c *netConf) keepFirewallChoice(h *sandnet.Host) {
	if c.Firewall != "" {
		return
	}
	name := nat.Name(h.Firewall())
	if name == "" {
		return
	}
	path := firewallChoice(h.StateDir())
	if _, err := os.Stat(path); err == nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".cni-firewall-*")
	if err != nil {
		return
	}
	_, werr := f.WriteString(name + "\n")
	if cerr := f.Close(); werr != nil || cerr != nil || os.Rename(f.Name(), path) != nil {
		os.Remove(f.Name())
	}
}
