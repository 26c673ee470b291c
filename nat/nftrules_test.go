package nat

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/sandnet/sandnet/internal/testns"
)

func nftGoldenScript(t *testing.T) string {
	var ports []PortMapping
	for _, s := range []string{"8080:80", "127.0.0.1:8081:80", "5353:53/udp", "[fd00:1::1]:8443:443"} {
		ps, err := ParsePort(s)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ps...)
	}
	ep := Endpoint{ID: "ep1", Addr: netip.MustParseAddr("10.88.0.2"), Addr6: netip.MustParseAddr("fd00:88::2"), Ports: ports}
	return nftScript([]Network{dual, internal}, map[string][]Endpoint{"web": {ep}})
}

// TestRenderNFT: the nftables layout as an nft -f script (golden).
func TestRenderNFT(t *testing.T) {
	got := nftGoldenScript(t)
	path := filepath.Join("testdata", "nftables.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./nat -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendering; got:\n%s\n(run go test ./nat -update if the change is meant)", path, got)
	}
}

// TestRenderNFTLoads: the rendered script is real nft syntax (loaded by
// nft -c, which checks it against the kernel without applying it).
func TestRenderNFTLoads(t *testing.T) {
	testns.NeedProgram(t, "checking the rendered script with nft -c", "nft")
	host := testns.New(t, "host")
	f := filepath.Join(t.TempDir(), "sandnet.nft")
	if err := os.WriteFile(f, []byte(nftGoldenScript(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	testns.Run(t, host, "nft", "-c", "-f", f)
}
