package nettest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sandnet/sandnet"
)

// ErrNoSuchHost is returned (wrapped) when no resolver knows a name.
var ErrNoSuchHost = errors.New("no such host")

// Resolver maps a host name, as seen from sandbox from, to addresses. It
// returns no addresses and a nil error when it does not know the name, so
// that the next resolver is asked.
type Resolver func(ctx context.Context, from *Sandbox, host string) ([]netip.Addr, error)

// AddResolver adds r after the lab's own names and the resolvers added
// before; the network's DNS server (when the sandbox has one) comes last.
func (l *Lab) AddResolver(r Resolver) {
	l.mu.Lock()
	l.resolvers = append(l.resolvers, r)
	l.mu.Unlock()
}

// Resolve maps host to addresses as seen from sandbox from: an IP address
// is itself; then the lab's sandbox names, hostnames and aliases (the
// target's address on a network it shares with from comes first); then the
// resolvers given to AddResolver; then the DNS servers in from's endpoints
// (queried from inside from), if any.
func (l *Lab) Resolve(ctx context.Context, from *Sandbox, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	if addrs := l.resolveLab(from, host); len(addrs) > 0 {
		return addrs, nil
	}
	l.mu.Lock()
	rs := slices.Clone(l.resolvers)
	l.mu.Unlock()
	rs = append(rs, dnsResolver)
	for _, r := range rs {
		addrs, err := r(ctx, from, host)
		if err != nil {
			return nil, err
		}
		if len(addrs) > 0 {
			return addrs, nil
		}
	}
	return nil, fmt.Errorf("resolving %q from sandbox %s: %w", host, from.Name, ErrNoSuchHost)
}

// resolveLab looks host up among the lab's sandboxes.
func (l *Lab) resolveLab(from *Sandbox, host string) []netip.Addr {
	host = strings.TrimSuffix(host, ".")
	l.mu.Lock()
	sbs := slices.Clone(l.order)
	l.mu.Unlock()
	for _, s := range sbs {
		eps := s.endpoints()
		if !knows(s, eps, host) {
			continue
		}
		var shared, other []netip.Addr
		for _, ep := range eps {
			onShared := from != nil && from.Endpoint(ep.Network) != nil
			for _, p := range ep.Addresses {
				if onShared {
					shared = append(shared, p.Addr())
				} else {
					other = append(other, p.Addr())
				}
			}
		}
		return append(shared, other...)
	}
	return nil
}

func knows(s *Sandbox, eps []*sandnet.Endpoint, host string) bool {
	if strings.EqualFold(s.Name, host) {
		return true
	}
	for _, ep := range eps {
		if strings.EqualFold(ep.Hostname, host) || slices.ContainsFunc(ep.Aliases, func(a string) bool { return strings.EqualFold(a, host) }) {
			return true
		}
	}
	return false
}

// dnsResolver asks the name servers of from's endpoints, from inside from.
func dnsResolver(ctx context.Context, from *Sandbox, host string) ([]netip.Addr, error) {
	var servers []netip.Addr
	for _, ep := range from.endpoints() {
		servers = append(servers, ep.DNS...)
	}
	if len(servers) == 0 {
		return nil, nil
	}
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var firstErr error
			for _, srv := range servers {
				var c net.Conn
				d := net.Dialer{Timeout: 2 * time.Second}
				err := from.NS.Do(func() (err error) {
					c, err = d.DialContext(ctx, network, hostPort(srv, 53))
					return err
				})
				if err == nil {
					return c, nil
				}
				if firstErr == nil {
					firstErr = err
				}
			}
			return nil, firstErr
		},
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resolving %q through %v from sandbox %s: %w", host, servers, from.Name, err)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}
