package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/sandnet/sandnet/netns"
)

// nsPrefix starts the name of every namespace the benchmark makes, so a
// leftover after a crash is recognisable (ip netns | grep snb-).
const nsPrefix = "snb-"

// lab is one tool's run: a private namespace playing the host, N sandbox
// namespaces made beforehand (not timed), and a scratch directory.
type lab struct {
	host  *netns.NS
	sbx   []*netns.NS
	dir   string
	ports bool
}

// newLab makes the namespaces of one run, a few at a time.
func newLab(ctx context.Context, base string, tool string, n int, ports bool) (*lab, error) {
	id := randomID()
	l := &lab{ports: ports}
	var err error
	if l.dir, err = os.MkdirTemp(base, tool+"-"); err != nil {
		return nil, err
	}
	if l.host, err = netns.Create(ctx, nsPrefix+id+"-host"); err != nil {
		l.close(ctx)
		return nil, err
	}
	// The lab host gets loopback up, as a real host has it.
	if nl, err := l.host.Netlink(); err == nil {
		if lo, err := nl.LinkByIndex(1); err == nil {
			nl.LinkSetUp(lo)
		}
	}
	l.sbx = make([]*netns.NS, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	next := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ns, err := netns.Create(ctx, fmt.Sprintf("%s%s-%d", nsPrefix, id, i))
				mu.Lock()
				l.sbx[i], errs = ns, append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		l.close(ctx)
		return nil, err
	}
	return l, nil
}

// close deletes the namespaces and the scratch directory; the kernel tears
// down whatever they still hold.
func (l *lab) close(ctx context.Context) error {
	var errs []error
	for _, ns := range append(l.sbx, l.host) {
		if ns == nil {
			continue
		}
		name := ns.Name()
		ns.Close()
		errs = append(errs, netns.Delete(ctx, name))
	}
	if l.dir != "" {
		errs = append(errs, os.RemoveAll(l.dir))
	}
	return errors.Join(errs...)
}

// path is where sandbox i's namespace is pinned, as a runtime would pass it.
func (l *lab) path(i int) string { return filepath.Join(netns.Dir, l.sbx[i].Name()) }

// hostPort is the host port sandbox i publishes when ports are on.
func hostPort(i int) uint16 { return uint16(20000 + i) }

// containerPort is the port published inside every sandbox.
const containerPort = 80

// The network every tool builds: one bridge, a /16 so 1000 sandboxes fit.
var (
	subnet  = netip.MustParsePrefix("10.77.0.0/16")
	gateway = netip.MustParseAddr("10.77.0.1")
)

// staticIP is sandbox i's address, for the tools that take it from the
// caller (netavark: podman does the IPAM).
func staticIP(i int) netip.Addr {
	b := gateway.As4()
	v := uint32(b[2])<<8 | uint32(b[3]) + uint32(i) + 1
	b[2], b[3] = byte(v>>8), byte(v)
	return netip.AddrFrom4(b)
}

func randomID() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}
