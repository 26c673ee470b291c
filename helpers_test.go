package sandnet

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/internal/dnsrun"
	"github.com/sandnet/sandnet/internal/testns"
	"github.com/sandnet/sandnet/netns"
)

// newTestHost makes a private namespace playing the host and a Host over it
// with its own state dir; both go away with the test.
func newTestHost(t testing.TB) *Host {
	t.Helper()
	return newTestHostFW(t, "")
}

// newTestHostFW is newTestHost with a given firewall backend ("iptables",
// "nftables"; "" picks the default), for tests that read or break the
// rules with that backend's own tools.
func newTestHostFW(t testing.TB, backend string) *Host {
	t.Helper()
	if backend == "iptables" {
		testns.NeedProgram(t, "iptables backend", "iptables", "ip6tables")
	}
	hns := testns.New(t, "host")
	return openTestHost(t, hns, HostConfig{StateDir: filepath.Join(t.TempDir(), "state"), FirewallBackend: backend})
}

// openTestHost makes a Host over hns with cfg and, when t ends, closes it
// and stops the DNS helper it may have started on cfg.StateDir (waiting
// until the helper has let go of the dir), so that nothing writes there
// while t.TempDir is removed.
func openTestHost(t testing.TB, hns *netns.NS, cfg HostConfig) *Host {
	t.Helper()
	h, err := NewHostNS(hns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := dnsrun.StopHelper(ctx, cfg.StateDir); err != nil {
			t.Error(err)
		}
	})
	return h
}

// listenTCP opens a TCP listener inside ns that echoes one line back.
func listenTCP(t *testing.T, ns *netns.NS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	return ln
}

// dialEcho connects from inside ns to addr and checks the echo.
func dialEcho(ns *netns.NS, addr string) error {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := "hello from " + ns.String() + "\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// hostResidue lists what sandnet objects remain in the host namespace and state dir.
func hostResidue(t *testing.T, h *Host) []string {
	t.Helper()
	var left []string
	nl, err := h.ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	links, _ := nl.LinkList()
	for _, l := range links {
		if _, ok := l.(*netlink.Veth); ok {
			left = append(left, "veth "+l.Attrs().Name)
		}
	}
	filepath.WalkDir(h.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(h.dir, p)
		if strings.HasPrefix(rel, "endpoints/") || (strings.HasPrefix(rel, "ipam/") && !strings.HasSuffix(rel, "lock") && !strings.Contains(rel, "last_reserved")) {
			left = append(left, "file "+rel)
		}
		return nil
	})
	return left
}

func mustAttach(t *testing.T, h *Host, sb *netns.NS, n Network, o AttachOptions) *Endpoint {
	t.Helper()
	ep, err := h.AttachNS(context.Background(), sb, n, o)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

var _ = testns.Ping
