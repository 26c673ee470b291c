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
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(ctx, "udp", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	m := new(mdns.Msg)
	m.SetQuestion(ProbeName+"."+strings.Trim(domain, ".")+".", mdns.TypeTXT)
	co := &mdns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return "", fmt.Errorf("probing %s: %w", addr, err)
	}
	for {
		r, err := co.ReadMsg()
		if err != nil {
			return "", fmt.Errorf("probing %s: %w", addr, err)
		}
		if r.Id != m.Id {
			continue
		}
		for _, rr := range r.Answer {
			if t, ok := rr.(*mdns.TXT); ok && len(t.Txt) > 0 {
				return strings.Join(t.Txt, ""), nil
			}
		}
		return "", fmt.Errorf("probing %s: the server there is not sandnet's (answer %s)", addr, mdns.RcodeToString[r.Rcode])
	}
}
