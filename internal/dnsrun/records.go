package dnsrun

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/state"
	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
)

// Records is the Source over a state directory's records (internal/state),
// generic over the root package's network and endpoint types as the
// records are; the functions say what the runner needs of them.
type Records[N, E any] struct {
	Store *state.Store[N, E]
	// Serve says whether network n's gateway runs a name server, and what
	// the runner needs of it.
	Serve func(n *N) (Network, bool)
	// DNS returns the name servers an endpoint got.
	DNS func(e *E) []netip.Addr
	// Record is what an endpoint answers to and with.
	Record func(e *E) dns.Record
}

// Networks lists the networks whose name server must run: some endpoint is
// being attached (it may need it) or uses the server (its DNS lists the
// gateway). It reads records only until one says so, usually the first:
// the runner asks every poll interval, whatever the number of endpoints.
func (s Records[N, E]) Networks() []Network {
	recs, _ := s.Store.Networks()
	var out []Network
	for _, rec := range recs {
		n, ok := s.Serve(&rec.Network)
		if ok && s.Store.AnyEndpoint(n.Name, func(e *state.EndpointRecord[E]) bool {
			dns := s.DNS(&e.Endpoint)
			return e.State == state.Attaching || slices.Contains(dns, n.Gateway) ||
				(n.Gateway6.IsValid() && slices.Contains(dns, n.Gateway6))
		}) {
			out = append(out, n)
		}
	}
	return out
}

// Names follows network's endpoint records (the source of truth, shared by
// every process) as its name server's names: a change to a record re-reads
// that record only, and queries never wait for a reload (dns.DirSource).
func (s Records[N, E]) Names(network string) (dns.Source, error) {
	dir := s.Store.EndpointDir(network)
	if err := statefile.MkdirAll(dir); err != nil {
		return nil, err
	}
	return dns.WatchDirMatching(dir, isRecordName, func(name string, b []byte) (dns.Record, bool) {
		r, err := state.Decode(filepath.Join(dir, name), b, func(r *state.EndpointRecord[E]) int { return r.Version })
		if err != nil {
			return dns.Record{}, false // a half-written or foreign file: read again when it changes
		}
		return s.Record(&r.Endpoint), true
	})
}

// isRecordName says whether name, in an endpoint directory, is an endpoint
// record (not a temporary file being written).
func isRecordName(name string) bool {
	return !statefile.IsTemp(name) && strings.HasSuffix(name, ".json")
}

// CheckTimeout bounds each query of CheckNames.
const CheckTimeout = 2 * time.Second

// Wrong is a name the server does not answer as it should, and how.
type Wrong struct{ Name, Detail string }

// CheckNames asks the name server at server, from inside sb, for each of
// names' IPv4 addresses and says, in order, which are wrong: no answer (it
// stops there: the server is down, one problem says it), or an answer
// without want (zero: any answer will do).
func CheckNames(ctx context.Context, sb *netns.NS, server netip.AddrPort, names []string, want netip.Addr) []Wrong {
	var ws []Wrong
	for _, name := range names {
		got, err := dns.QueryA(ctx, Dial(sb), server, name, CheckTimeout)
		if err != nil {
			return append(ws, Wrong{name, fmt.Sprintf("no answer from %s: %v", server, err)})
		}
		if want.IsValid() && !slices.Contains(got, want) {
			ws = append(ws, Wrong{name, fmt.Sprintf("%s answers %v, want %s", server, got, want)})
		}
	}
	return ws
}
