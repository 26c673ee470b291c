package diag

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/internal/testns"
)

func TestTopologyRendersWithDot(t *testing.T) {
	l := newLab(t)
	sb2 := testns.New(t, "sb")
	ep2, err := l.host.AttachNS(context.Background(), sb2, sandnet.Network{Name: "n1"}, sandnet.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.host.Detach(context.Background(), ep2)
	topo, err := Topology(l.host)
	if err != nil {
		t.Fatal(err)
	}
	// Published ports come from the NAT work; draw one as if it were there.
	topo.Endpoints[0].Ports = []sandnet.PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}
	dot := topo.DOT()
	for _, want := range []string{l.ep.Bridge, l.ep.HostIfName, ep2.HostIfName, "10.77.0.2/24", "10.77.0.3/24", "127.0.0.1:8080/tcp", "DNAT to :80", l.sb.Name(), sb2.Name()} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %q:\n%s", want, dot)
		}
	}
	if got := strings.Count(topo.Only(l.sb.Inode()).DOT(), "veth"); got != 1 {
		t.Errorf("Only(sb) draws %d veth pairs, want 1", got)
	}
	testns.NeedProgram(t, "rendering the DOT", "dot")
	cmd := exec.Command("dot", "-Tsvg")
	cmd.Stdin = strings.NewReader(dot)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<svg") {
		t.Fatalf("dot -Tsvg: %v\n%s\n%s", err, out, dot)
	}
}
