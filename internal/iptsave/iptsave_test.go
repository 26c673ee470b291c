package iptsave

import "testing"

func TestParse(t *testing.T) {
	out := "# Generated\n*nat\n:PREROUTING ACCEPT [0:0]\n:SANDNET-DNAT - [0:0]\n" +
		"-A PREROUTING -m addrtype --dst-type LOCAL -j SANDNET-DNAT\n" +
		`-A SANDNET-DNAT -p tcp -m comment --comment "sandnet net=n1 ep=\"x\"" -j DNAT --to-destination 10.0.0.2:80` + "\nCOMMIT\n" +
		"*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n"
	ts := Parse(out)
	if len(ts) != 2 || ts[0].Name != "nat" || ts[1].Name != "filter" {
		t.Fatalf("tables = %+v", ts)
	}
	if c := ts[0].Chains; len(c) != 2 || c[0] != (Chain{"PREROUTING", "ACCEPT"}) || c[1] != (Chain{"SANDNET-DNAT", ""}) {
		t.Errorf("nat chains = %+v", c)
	}
	if r := ts[0].Rules; len(r) != 2 || r[1].Chain != "SANDNET-DNAT" || r[1].Comment != `sandnet net=n1 ep="x"` {
		t.Errorf("nat rules = %+v", r)
	}
	if f := ts[1]; f.Chains[0].Policy != "DROP" || len(f.Rules) != 1 || f.Rules[0].Comment != "" {
		t.Errorf("filter = %+v", f)
	}
	if ts := Parse(":FORWARD ACCEPT [0:0]\n-A FORWARD -j DROP\n"); len(ts) != 1 || ts[0].Name != "" || len(ts[0].Rules) != 1 {
		t.Errorf("fragment = %+v", ts)
	}
}
