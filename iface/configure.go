package iface

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

// Setup is what Configure puts on a sandbox's link.
type Setup struct {
	// Addrs are the link's addresses; Routes go through it.
	Addrs  []netip.Prefix
	Routes []Route
	// Fresh: the link was just made (by an attach, or by a repair that
	// replaced it), so nothing is on it yet and its settings are set.
	Fresh bool
	// Quiet: the link sends no IPv6 router solicitations (a bridge that
	// answers address resolution, where each would reach every port and
	// nothing answers; the sandbox's routes are the caller's).
	Quiet bool
	// IPv6Off: the link is known to have IPv6 off (BornWithoutIPv6 made
	// it so), which a fresh link's settings then need not check.
	IPv6Off bool
}

// Configure puts s.Addrs on link, brings it up and adds s.Routes through
// it; unless s.Fresh, what is there already stays. A fresh link gets its
// per-interface settings (see freshConf). This is the one path for
// sandbox addresses, routes and settings: attach and repair both take it.
//
// Equivalent to: ip -n SBX addr add ADDR dev eth0;
// [ip netns exec SBX sysctl -w net.ipv6.conf.eth0.disable_ipv6=1;]
// ip -n SBX link set eth0 up; ip -n SBX route add default via GW dev eth0
func (l *Link) Configure(ctx context.Context, s Setup) error {
	var have []netip.Prefix
	if !s.Fresh {
		var err error
		if have, err = l.Addrs(); err != nil {
			return err
		}
	}
	for _, p := range s.Addrs {
		if !slices.Contains(have, p) {
			if err := l.AddAddr(ctx, p); err != nil {
				return err
			}
		}
	}
	if s.Fresh {
		if err := l.freshConf(ctx, s); err != nil {
			return err
		}
	}
	if s.Fresh || !l.IsUp() {
		if err := l.Up(ctx); err != nil {
			return err
		}
	}
	for _, r := range s.Routes {
		if !s.Fresh {
			if ok, err := l.HasRoute(r); err != nil || ok {
				if err != nil {
					return err
				}
				continue
			}
		}
		if err := l.AddRoute(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// freshConf sets the per-interface settings of a fresh sandbox link. A
// link without an IPv6 address has IPv6 turned off, as Docker does on
// IPv4-only networks: no link-local address, and none of the multicast
// chatter that a bridge floods to every other sandbox (a kernel without
// IPv6 has nothing to turn off). One with IPv6 on a quiet link sends no
// router solicitations.
func (l *Link) freshConf(ctx context.Context, s Setup) error {
	if !slices.ContainsFunc(s.Addrs, func(p netip.Prefix) bool { return p.Addr().Is6() }) {
		if s.IPv6Off && !explain.Enabled(ctx) { // an explanation shows the sysctl, which then finds nothing to do
			return nil
		}
		if err := l.SetConf(ctx, "ipv6", "disable_ipv6", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("turning IPv6 off: %w", err)
		}
		return nil
	}
	if s.Quiet {
		if err := l.SetConf(ctx, "ipv6", "router_solicitations", "0"); err != nil {
			return fmt.Errorf("turning router solicitations off: %w", err)
		}
	}
	return nil
}

// openAt opens name in directory dir for reading and writing.
func openAt(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: dir.Name() + "/" + name, Err: err}
	}
	return os.NewFile(uintptr(fd), dir.Name()+"/"+name), nil
}

// BornWithoutIPv6 runs create, which makes the interface ifName in ns
// (from another namespace's netlink handle, which acts there from any
// thread), inside ns while net.ipv6.conf.default.disable_ipv6 is 1 there,
// puts the default back, then makes sure ifName has IPv6 off, all in one
// visit to ns (netns.Do: a fresh locked thread and two setns each). It
// reports whether ifName is known to have IPv6 off (false: a kernel
// without IPv6, or the check could not read it; Configure then checks).
//
// An interface born so never runs IPv6 (no link-local address, no DAD or
// router solicitation). Turning IPv6 off on an existing interface instead
// tears its IPv6 state down under the kernel's RTNL lock, and the write
// spins, retrying, while another attach holds that lock: it was most of
// what concurrent attaches waited for. Two callers creating interfaces in
// one namespace at once may interleave so that one interface is born with
// IPv6 on (the other put the default back first): the check turns it off
// then. The default ends as it was, as each puts back only what it
// changed.
//
// Equivalent to: ip netns exec NS sysctl -w net.ipv6.conf.default.disable_ipv6=1;
// ip link add ...; ip netns exec NS sysctl -w net.ipv6.conf.default.disable_ipv6=0
func BornWithoutIPv6(ns *netns.NS, ifName string, create func() error) (off bool, err error) {
	return BeginBornWithoutIPv6(ns, ifName).Create(create)
}

// A Birth is BornWithoutIPv6 begun before the caller is ready to create
// the interface: the visit to the namespace starts at once, and its first
// lookup of /proc/sys/net/ipv6 runs while the caller does other work. That
// lookup compares against the entry of every namespace that made one (see
// netns.OpenProcSys): 0.3-0.6 ms with a thousand sandboxes, on another CPU
// if there is one. Create or Cancel ends the visit; until then a locked
// thread waits in the namespace.
type Birth struct {
	create chan func() error // the create function; nil: cancelled
	done   chan birthResult
	once   sync.Once
	res    birthResult
}

type birthResult struct {
	off bool
	err error
}

// BeginBornWithoutIPv6 starts BornWithoutIPv6 for ifName in ns; Create
// finishes it, Cancel abandons it (one of them must be called).
func BeginBornWithoutIPv6(ns *netns.NS, ifName string) *Birth {
	b := &Birth{create: make(chan func() error, 1), done: make(chan birthResult, 1)}
	go func() {
		var r birthResult
		r.err = ns.Do(func() (err error) {
			r.off, err = bornWithoutIPv6(ifName, b.create)
			return err
		})
		b.done <- r
	}()
	return b
}

// Create runs create in the visit begun (see BornWithoutIPv6) and reports
// whether the interface is known to have IPv6 off. Create is called once.
func (b *Birth) Create(create func() error) (off bool, err error) {
	b.once.Do(func() {
		b.create <- create
		b.res = <-b.done
	})
	return b.res.off, b.res.err
}

// Cancel ends a visit that Create was not called for, and returns once
// the thread has left the namespace; after Create it does nothing.
func (b *Birth) Cancel() {
	b.once.Do(func() {
		b.create <- nil
		<-b.done
	})
}

// bornWithoutIPv6 is BornWithoutIPv6's work inside the namespace, with
// the create function coming from next once the caller is ready (nil:
// nothing to create).
func bornWithoutIPv6(ifName string, next <-chan func() error) (off bool, err error) {
	// Both files are opened from their directory, itself looked up where
	// that costs least (netns.OpenProcSys).
	conf, cerr := netns.OpenProcSys("net/ipv6/conf", os.O_RDONLY)
	create := <-next
	if create == nil {
		if cerr == nil {
			conf.Close()
		}
		return false, nil
	}
	if cerr != nil {
		return false, create() // no IPv6 in this kernel: nothing to turn off
	}
	defer conf.Close()
	f, err := openAt(conf, "default/disable_ipv6")
	if err != nil {
		return false, create()
	}
	defer f.Close()
	changed := false
	b := make([]byte, 8)
	if k, _ := f.ReadAt(b, 0); strings.TrimSpace(string(b[:k])) == "0" {
		_, werr := f.WriteAt([]byte("1"), 0)
		changed = werr == nil
	}
	err = create()
	if changed {
		f.WriteAt([]byte("0"), 0)
	}
	if err != nil {
		return false, err
	}
	g, gerr := openAt(conf, ifName+"/disable_ipv6")
	if gerr != nil {
		return false, nil
	}
	defer g.Close()
	if k, _ := g.ReadAt(b, 0); strings.TrimSpace(string(b[:k])) == "1" {
		return true, nil
	}
	_, werr := g.WriteAt([]byte("1"), 0)
	return werr == nil, nil
}
