package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
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
// else the kept choice, else the answer of a probe, kept.
func (c *netConf) firewallBackend() string {
	if c.Firewall != "" {
		return c.Firewall
	}
	if b, err := os.ReadFile(firewallChoice(c.StateDir)); err == nil {
		switch s := strings.TrimSpace(string(b)); s {
		case nat.BackendNFTables, nat.BackendIPTables:
			return s
		}
	}
	return c.chooseFirewall()
}

// chooseFirewall probes the plugin's namespace as NewHost's auto would
// (nftables where it works, else iptables) and keeps the answer; "" (auto)
// if the namespace cannot be opened.
func (c *netConf) chooseFirewall() string {
	ns, err := netns.Current()
	if err != nil {
		return ""
	}
	name := nat.BackendIPTables
	if nat.NFTablesAvailable(ns) == nil {
		name = nat.BackendNFTables
	}
	ns.Close()
	path := firewallChoice(c.StateDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return name
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".cni-firewall-*")
	if err != nil {
		return name
	}
	_, werr := f.WriteString(name + "\n")
	if cerr := f.Close(); werr != nil || cerr != nil || os.Rename(f.Name(), path) != nil {
		os.Remove(f.Name())
	}
	return name
}
