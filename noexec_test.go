package sandnet

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
)

// TestDefaultPathExecsNothing: with the default firewall backend
// (nftables, through netlink), creating a network, attaching a sandbox
// with DNS names and published ports, checking, repairing, reconciling,
// detaching, collecting garbage and removing the network run no program.
// PATH holds only stubs that record being run (for ip, iptables, nft,
// conntrack, sysctl, nsenter, sh, ...); none may be. The DNS helper is the
// running program re-executed from /proc/self/exe, not a program on PATH.
func TestDefaultPathExecsNothing(t *testing.T) {
	h := newTestHost(t)
	sb := testns.New(t, "sb")
	stubs := t.TempDir()
	log := filepath.Join(t.TempDir(), "ran")
	for _, name := range []string{"ip", "iptables", "ip6tables", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore",
		"iptables-nft", "iptables-legacy", "nft", "conntrack", "sysctl", "nsenter", "unshare", "sh", "bash", "modprobe", "tc", "bridge", "ping", "dig", "dnsmasq"} {
		// The log catches a program started even when its failure is ignored.
		stub := "#!/bin/sh\necho " + name + " \"$@\" >> " + log + "\nexit 1\n"
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", stubs)
	ctx := context.Background()
	ports, err := ParsePort("18080:80")
	if err != nil {
		t.Fatal(err)
	}
	n := Network{Name: "noexec", Subnet: pfx("10.96.7.0/24"), Subnet6: pfx("fd00:96:7::/64")}
	ep := mustAttach(t, h, sb, n, AttachOptions{Hostname: "web", Aliases: []string{"www"}, Ports: ports})
	if rep, err := h.Check(ctx, ep); err != nil || len(rep.Problems) != 0 {
		t.Errorf("check: %v %+v", err, rep)
	}
	if _, err := h.Repair(ctx, ep); err != nil {
		t.Errorf("repair: %v", err)
	}
	if _, err := h.Reconcile(ctx); err != nil {
		t.Errorf("reconcile: %v", err)
	}
	if err := h.Detach(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if _, err := h.GC(ctx); err != nil {
		t.Errorf("gc: %v", err)
	}
	if err := h.RemoveNetwork(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if ran, err := os.ReadFile(log); err == nil {
		t.Errorf("the default path ran programs:\n%s", ran)
	}
}
