package dns

import (
	"net/netip"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestFastPathMatchesSlowPath answers the same queries from the wire form
// and through miekg/dns: the messages must be the same, header flags,
// rcode, question and answers.
func TestFastPathMatchesSlowPath(t *testing.T) {
	recs := []Record{
		{Names: []string{"web", "www"}, Addrs: addrs("10.88.0.2", "fd00::2")},
		{Names: []string{"db"}, Addrs: addrs("10.88.0.3")},
		{Names: []string{"pool"}, Addrs: addrs("10.88.0.4")},
		{Names: []string{"pool"}, Addrs: addrs("10.88.0.5")},
		{Names: []string{"my.dotted.name"}, Addrs: addrs("10.88.0.6")},
		{Names: []string{"v6only"}, Addrs: addrs("fd00::7")},
	}
	var many []netip.Addr // a name with more answers than 512 bytes hold
	for i := range 40 {
		many = append(many, netip.AddrFrom4([4]byte{10, 88, 1, byte(i)}))
	}
	recs = append(recs, Record{Names: []string{"many"}, Addrs: many})
	s := &Server{cfg: Config{Names: Static{NewTable(recs)}, TTL: 7}, domain: ".sandnet.internal.", suffix: ".sandnet.internal"}

	for _, tc := range []struct {
		name  string
		qtype uint16
		rd    bool
		fast  bool // answered by the fast path
	}{
		{"web.", mdns.TypeA, true, true},
		{"WeB.", mdns.TypeA, false, true},
		{"web.sandnet.internal.", mdns.TypeAAAA, true, true},
		{"WWW.Sandnet.Internal.", mdns.TypeA, true, true},
		{"pool.", mdns.TypeA, true, true},
		{"my.dotted.name.", mdns.TypeA, true, true},
		{"db.", mdns.TypeAAAA, true, true},  // exists, no AAAA: NOERROR, no answer
		{"v6only.", mdns.TypeA, true, true}, // the same the other way
		{"nosuch.", mdns.TypeA, true, true}, // NXDOMAIN
		{"no.such.sandnet.internal.", mdns.TypeA, true, true},
		{".", mdns.TypeA, true, true},
		{"many.", mdns.TypeA, true, false}, // too long for 512 bytes: truncated by the slow path
		{"web.", mdns.TypeMX, true, false}, // other types
		{"_sandnet-server.sandnet.internal.", mdns.TypeTXT, true, false},
		{"2.0.88.10.in-addr.arpa.", mdns.TypePTR, true, false},
	} {
		req := new(mdns.Msg)
		req.SetQuestion(tc.name, tc.qtype)
		req.RecursionDesired = tc.rd
		req.Id = 4242
		wire, err := req.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var q wireQuery
		var got []byte
		if parseQuery(wire, make([]byte, 0, 256), &q) && (q.qtype == mdns.TypeA || q.qtype == mdns.TypeAAAA) {
			if key, local := s.localKey(s.cfg.Names.Table(), q.name); local {
				a, known := s.cfg.Names.Table().lookupBytes(key)
				rcode := mdns.RcodeSuccess
				if !known {
					rcode = mdns.RcodeNameError
				}
				got = appendReply(nil, wire, &q, rcode, a, s.cfg.TTL)
			}
		}
		if (got != nil) != tc.fast {
			t.Errorf("%s %s: fast path answered: %v, want %v", tc.name, mdns.TypeToString[tc.qtype], got != nil, tc.fast)
		}
		slow, fwd := s.answer(s.cfg.Names.Table(), req)
		if fwd {
			t.Errorf("%s: forwarded", tc.name)
			continue
		}
		slow.Truncate(mdns.MinMsgSize)
		if got == nil {
			continue
		}
		fast := new(mdns.Msg)
		if err := fast.Unpack(got); err != nil {
			t.Fatalf("%s: the fast answer does not unpack: %v", tc.name, err)
		}
		if a, b := norm(fast), norm(slow); a != b {
			t.Errorf("%s %s:\nfast %s\nslow %s", tc.name, mdns.TypeToString[tc.qtype], a, b)
		}
	}
}

// norm prints a message without the parts that may differ in form only.
func norm(m *mdns.Msg) string {
	m.Compress = false
	return strings.ReplaceAll(m.String(), "\t", " ")
}

// TestParseQueryRejects: what the fast path must leave to the slow path.
func TestParseQueryRejects(t *testing.T) {
	ok := new(mdns.Msg)
	ok.SetQuestion("web.", mdns.TypeA)
	good, _ := ok.Pack()
	var q wireQuery
	if !parseQuery(good, nil, &q) || string(q.name) != "web" {
		t.Fatalf("plain query: %q", q.name)
	}
	resp := new(mdns.Msg)
	resp.SetReply(ok)
	r, _ := resp.Pack()
	notify := new(mdns.Msg)
	notify.SetNotify("web.")
	n, _ := notify.Pack()
	two := ok.Copy()
	two.Question = append(two.Question, two.Question[0])
	tw, _ := two.Pack()
	chaos := ok.Copy()
	chaos.Question[0].Qclass = mdns.ClassCHAOS
	ch, _ := chaos.Pack()
	for name, b := range map[string][]byte{
		"short": good[:11], "response": r, "notify": n, "two questions": tw, "class CH": ch,
		"truncated name": good[:14], "label with dot": append(append(append([]byte{}, good[:12]...), 3, 'a', '.', 'b', 0), good[len(good)-4:]...),
	} {
		if parseQuery(b, nil, &q) {
			t.Errorf("%s: taken by the fast path", name)
		}
	}
}
