package diag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/bridge"
	"github.com/sandnet/sandnet/internal/probe"
	"github.com/sandnet/sandnet/netns"
)

// deadline is now+timeout, or ctx's deadline when that is sooner.
func deadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// Ping sends ICMP echo requests to dst from inside sb (a raw socket opened
// in sb) and returns nil when one is answered within two times timeout.
//
// Equivalent to: ip netns exec SB ping -c 2 -W TIMEOUT DST
func Ping(ctx context.Context, sb *netns.NS, dst netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithDeadline(ctx, deadline(ctx, 2*timeout))
	defer cancel()
	return probe.Ping(ctx, sb, dst)
}

// Query sends one DNS query (UDP, port 53) from inside sb to server and
// returns the answer, whatever its rcode. qtype is "A", "AAAA", "NS"...
//
// Equivalent to: ip netns exec SB dig @SERVER NAME QTYPE +tries=1 +time=TIMEOUT
func Query(ctx context.Context, sb *netns.NS, server netip.Addr, name, qtype string, timeout time.Duration) (*dns.Msg, error) {
	var conn net.Conn
	if err := sb.Do(func() (err error) {
		conn, err = net.Dial("udp", netip.AddrPortFrom(server, 53).String())
		return err
	}); err != nil {
		return nil, err
	}
	defer conn.Close()
	co := &dns.Conn{Conn: conn}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.StringToType[qtype])
	q.RecursionDesired = true
	var lastErr error
	for range 2 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		co.SetDeadline(deadline(ctx, timeout))
		if err := co.WriteMsg(q); err != nil {
			return nil, err
		}
		for {
			m, err := co.ReadMsg()
			if err != nil {
				lastErr = err
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					lastErr = errors.New("timeout")
				}
				break
			}
			if m.Id == q.Id {
				return m, nil
			}
		}
		if errors.Is(lastErr, unix.ECONNREFUSED) {
			return nil, errors.New("connection refused: nothing listens on port 53")
		}
	}
	return nil, lastErr
}

func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		}
	}
	return out
}

func rcodeName(m *dns.Msg) string {
	if s, ok := dns.RcodeToString[m.Rcode]; ok {
		return s
	}
	return fmt.Sprint(m.Rcode)
}

// PortState returns the STP state of bridge port index in ns: disabled,
// listening, learning, forwarding or blocking (see bridge.PortState).
//
// Equivalent to: bridge -n NS link show dev PORT
func PortState(ns *netns.NS, index int) (string, error) { return bridge.PortState(ns, index) }
