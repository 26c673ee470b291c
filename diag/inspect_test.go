package diag

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
)

func TestInspect(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	// Things to find: a route in another table, listeners, a neighbour.
	testns.Run(t, l.sb, "ip", "route", "add", "10.99.0.0/24", "via", "10.77.0.1", "table", "100")
	var tcp net.Listener
	var udp net.PacketConn
	if err := l.sb.Do(func() (err error) {
		if tcp, err = net.Listen("tcp4", "0.0.0.0:8080"); err != nil {
			return err
		}
		udp, err = net.ListenPacket("udp", "10.77.0.2:5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	defer udp.Close()
	if err := Ping(ctx, l.sb, labGW, 2e9); err != nil {
		t.Fatal(err)
	}

	r, err := Inspect(ctx, l.sb, l.host)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) > 0 {
		t.Errorf("errors: %v", r.Errors)
	}
	t.Run("netns", func(t *testing.T) {
		if r.NetNS.Inode != l.sb.Inode() || r.NetNS.Name != l.sb.Name() || r.NetNS.Path != l.sb.Path() {
			t.Errorf("netns = %+v", r.NetNS)
		}
	})
	t.Run("links", func(t *testing.T) {
		i := slices.IndexFunc(r.Links, func(k Link) bool { return k.Name == "eth0" })
		if i < 0 {
			t.Fatalf("no eth0 in %+v", r.Links)
		}
		eth0 := r.Links[i]
		hnl, _ := l.hns.Netlink()
		hv, err := hnl.LinkByName(l.ep.HostIfName)
		if err != nil {
			t.Fatal(err)
		}
		if !eth0.Up || eth0.State != "up" || eth0.Type != "veth" || eth0.MTU != l.ep.MTU || eth0.MAC != l.ep.MAC {
			t.Errorf("eth0 = %+v, want up veth mtu %d mac %s", eth0, l.ep.MTU, l.ep.MAC)
		}
		if eth0.PeerIndex != hv.Attrs().Index {
			t.Errorf("eth0 peer index %d, host veth %s is %d", eth0.PeerIndex, l.ep.HostIfName, hv.Attrs().Index)
		}
		if !slices.ContainsFunc(r.Links, func(k Link) bool { return k.Name == "lo" && k.Up }) {
			t.Errorf("lo missing or down: %+v", r.Links)
		}
	})
	t.Run("addresses", func(t *testing.T) {
		want := Address{Link: "eth0", Prefix: netip.MustParsePrefix("10.77.0.2/24"), Scope: "global"}
		if !slices.Contains(r.Addresses, want) {
			t.Errorf("addresses %+v lack %+v", r.Addresses, want)
		}
	})
	t.Run("routes", func(t *testing.T) {
		has := func(table, dst string, gw string) bool {
			return slices.ContainsFunc(r.Routes, func(x Route) bool {
				return x.Table == table && x.Dst.String() == dst && (gw == "" || x.Gateway.String() == gw)
			})
		}
		if !has("main", "0.0.0.0/0", "10.77.0.1") || !has("main", "10.77.0.0/24", "") || !has("100", "10.99.0.0/24", "10.77.0.1") || !has("local", "10.77.0.2/32", "") {
			t.Errorf("routes: %+v", r.Routes)
		}
	})
	t.Run("neighbours", func(t *testing.T) {
		i := slices.IndexFunc(r.Neighbours, func(n Neighbour) bool { return n.IP == labGW })
		if i < 0 || r.Neighbours[i].Link != "eth0" || r.Neighbours[i].MAC == "" {
			t.Errorf("neighbours %+v: want the gateway on eth0 with a MAC", r.Neighbours)
		}
	})
	t.Run("resolvConf", func(t *testing.T) {
		rc := r.ResolvConf
		if rc.Path != "/etc/netns/"+l.sb.Name()+"/resolv.conf" || len(rc.Nameservers) != 1 || rc.Nameservers[0] != labDNS || !slices.Equal(rc.Search, []string{"lab.test"}) {
			t.Errorf("resolv.conf = %+v", rc)
		}
	})
	t.Run("sockets", func(t *testing.T) {
		want := []Socket{
			{Proto: "tcp", Local: netip.MustParseAddrPort("0.0.0.0:8080"), State: "LISTEN"},
			{Proto: "udp", Local: netip.MustParseAddrPort("10.77.0.2:5353"), State: "UNCONN"},
		}
		for _, w := range want {
			if !slices.ContainsFunc(r.Sockets, func(s Socket) bool {
				return s.Proto == w.Proto && s.Local == w.Local && s.State == w.State && s.Inode != 0
			}) {
				t.Errorf("sockets %+v lack %+v", r.Sockets, w)
			}
		}
	})
	t.Run("attached", func(t *testing.T) {
		if len(r.Attached) != 1 {
			t.Fatalf("attached = %+v, want one endpoint", r.Attached)
		}
		a := r.Attached[0]
		if a.Network != "n1" || a.Driver != "bridge" || a.EndpointID != l.ep.ID || a.HostIfName != l.ep.HostIfName ||
			a.Bridge != l.ep.Bridge || a.Gateway != labGW || a.Hostname != "web" || len(a.Ports) != 0 {
			t.Errorf("attached = %+v", a)
		}
	})
	t.Run("json", func(t *testing.T) {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{`"inode":`, `"peerIndex":`, `"table":"100"`, `"nameservers":["10.77.0.254"]`, `"hostIfName":"` + l.ep.HostIfName, `"local":"0.0.0.0:8080"`} {
			if !strings.Contains(string(b), k) {
				t.Errorf("JSON lacks %s: %s", k, b)
			}
		}
		if back.NetNS != r.NetNS || len(back.Links) != len(r.Links) {
			t.Errorf("JSON round trip differs")
		}
	})
}

func TestInspectWithoutHost(t *testing.T) {
	sb := testns.New(t, "sb")
	r, err := Inspect(context.Background(), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Links) != 1 || r.Links[0].Name != "lo" || len(r.Attached) != 0 {
		t.Errorf("fresh namespace: %+v", r)
	}
	if r.ResolvConf.Path != "/etc/resolv.conf" {
		t.Errorf("resolv.conf of a namespace without /etc/netns/NAME: %s, want /etc/resolv.conf", r.ResolvConf.Path)
	}
}

func TestParseHexAddrPort(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0035":                         "0.0.0.0:53",
		"00000000000000000000000001000000:0016": "[::1]:22",
		"0000000000000000FFFF00000100007F:0050": "127.0.0.1:80",
	} {
		got, err := parseHexAddrPort(in)
		if err != nil || got.String() != want {
			t.Errorf("parseHexAddrPort(%s) = %v, %v; want %s", in, got, err, want)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	var rc ResolvConf
	parseResolvConf(&rc, []byte("# c\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nsearch a.test b.test\noptions ndots:0 edns0\n"))
	if len(rc.Nameservers) != 2 || rc.Nameservers[1].String() != "fe80::1" || len(rc.Search) != 2 || len(rc.Options) != 2 {
		t.Errorf("parsed %+v", rc)
	}
}
