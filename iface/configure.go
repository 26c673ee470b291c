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

// IPv6OffByDefault makes an interface created in ns from now on start with
// IPv6 off (net.ipv6.conf.default.disable_ipv6=1 in ns) and returns the
// function that puts the default back. An interface born so never runs
// IPv6 (no link-local address, no DAD or router solicitation), and
// Configure, which still checks, then has nothing to write. Turning IPv6
// off on an existing interface tears its IPv6 state down under the
// kernel's RTNL lock, and the write spins, retrying, while another attach
// holds that lock: it was most of what concurrent attaches waited for.
//
// Two callers creating interfaces in one namespace at once may interleave
// so that one interface is born with IPv6 on: Configure turns it off then.
// The default ends as it was, as each puts back only what it changed.
func IPv6OffByDefault(ns *netns.NS) (restore func()) {
	var (
		f       *os.File
		changed bool
	)
	err := ns.Do(func() error {
		var err error
		// The file acts in the namespace it was opened in, wherever it is
		// written from later.
		f, err = os.OpenFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", os.O_RDWR, 0)
		if err != nil {
			return err // no IPv6 in this kernel: nothing to turn off
		}
		b := make([]byte, 8)
		n, _ := f.Read(b)
		if strings.TrimSpace(string(b[:n])) == "0" {
			_, err = f.WriteAt([]byte("1"), 0)
			changed = err == nil
		}
		return nil
	})
	if err != nil || f == nil {
		return func() {}
	}
	return func() {
		if changed {
			f.WriteAt([]byte("0"), 0)
		}
		f.Close()
	}
}
