package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Probe asks the server on addr (UDP) for its ID (the TXT record of
// ProbeName under domain), through conn-opening function dial, and returns
// it. It tells a sandnet server from any other program holding the port.
func Probe(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr netip.AddrPort, domain string, timeout time.Duration) (string, error) {
	if domain == "" {
		domain = DefaultDomain
	}
	r, err := exchange(ctx, dial, addr, ProbeName+"."+strings.Trim(domain, ".")+".", mdns.TypeTXT, timeout)
	if err != nil {
		return "", fmt.Errorf("probing %s: %w", addr, err)
	}
	for _, rr := range r.Answer {
		if t, ok := rr.(*mdns.TXT); ok && len(t.Txt) > 0 {
			return strings.Join(t.Txt, ""), nil
		}
	}
	return "", fmt.Errorf("probing %s: the server there is not sandnet's (answer %s)", addr, mdns.RcodeToString[r.Rcode])
}

// QueryA asks the server on addr (UDP), through conn-opening function
// dial, for name's IPv4 addresses; an answer other than success is an
// error naming its code.
func QueryA(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr netip.AddrPort, name string, timeout time.Duration) ([]netip.Addr, error) {
	r, err := exchange(ctx, dial, addr, mdns.Fqdn(name), mdns.TypeA, timeout)
	if err != nil {
		return nil, err
	}
	if r.Rcode != mdns.RcodeSuccess {
		return nil, fmt.Errorf("%s", mdns.RcodeToString[r.Rcode])
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// exchange sends one question to the server on addr and returns its
// answer, within timeout.
func exchange(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr netip.AddrPort, name string, qtype uint16, timeout time.Duration) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(ctx, "udp", addr.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	co := &mdns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	for {
		r, err := co.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id == m.Id {
			return r, nil
		}
	}
}
