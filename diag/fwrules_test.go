package diag

import (
	"net/netip"
	"testing"
)

// A FORWARD chain shaped like Docker's, with a user chain and isolation.
const dockerLike = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:ISOLATION - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j ISOLATION
-A FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i br0 ! -o br0 -m comment --comment "sandnet n1 out" -j ACCEPT
-A FORWARD -i br0 -o br0 -j ACCEPT
-A DOCKER-USER -j RETURN
-A ISOLATION -i br0 -o br1 -j DROP
-A ISOLATION -j RETURN
COMMIT
`

func TestEvalForward(t *testing.T) {
	src := netip.MustParseAddr("10.1.0.2")
	chains := ParseIptablesSave(dockerLike)
	v := EvalForward(chains, Packet{In: "br0", Src: src})
	if v.Verdict != "ACCEPT" || v.Rule != `-A FORWARD -i br0 ! -o br0 -m comment --comment "sandnet n1 out" -j ACCEPT` || len(v.Partial) != 1 {
		t.Errorf("br0: %+v", v)
	}
	if v := EvalForward(chains, Packet{In: "br9", Src: src}); v.Verdict != "DROP" || v.Rule != "" {
		t.Errorf("br9 (no accept rule, policy DROP): %+v", v)
	}
	chains["DOCKER-USER"].Rules = append([]string{"-A DOCKER-USER -s 10.1.0.0/16 -j DROP"}, chains["DOCKER-USER"].Rules...)
	if v := EvalForward(chains, Packet{In: "br0", Src: src}); v.Verdict != "DROP" || v.Rule != "-A DOCKER-USER -s 10.1.0.0/16 -j DROP" {
		t.Errorf("DROP in a user chain: %+v", v)
	}
	if v := EvalForward(ParseIptablesSave(""), Packet{In: "br0", Src: src}); v.Verdict != "ACCEPT" {
		t.Errorf("no filter table: %+v", v)
	}
	if v := EvalForward(ParseIptablesSave(":FORWARD ACCEPT [0:0]\n-A FORWARD -i sn-+ -p tcp -j REJECT\n-A FORWARD ! -s 10.1.0.0/24 -j DROP\n"), Packet{In: "sn-x", Src: src}); v.Verdict != "ACCEPT" || len(v.Partial) != 1 {
		t.Errorf("partial and negated rules: %+v", v)
	}
}
