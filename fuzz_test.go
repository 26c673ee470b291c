package sandnet

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
)

// FuzzNetworkValidation: any definition is either accepted, with a gateway
// inside its subnet and a kernel-valid bridge name, or refused with ErrInvalid.
func FuzzNetworkValidation(f *testing.F) {
	f.Add("n1", "bridge", "10.88.0.0/24", "", "", "fd00::/64", 1500, "")
	f.Add("../x", "bridge", "10.88.0.1/24", "10.89.0.1", "", "", 0, "")
	f.Add("a", "macvlan", "192.168.0.0/30", "192.168.0.3", "192.168.0.0/31", "", 9000, "br-very-long-name")
	f.Add("n", "overlay", "0.0.0.0/0", "", "", "::/0", -1, "")
	f.Fuzz(func(t *testing.T, name, driver, subnet, gw, rng, subnet6 string, mtu int, br string) {
		n := Network{Name: name, Driver: Driver(driver), MTU: mtu, Bridge: br}
		n.Subnet, _ = netip.ParsePrefix(subnet)
		n.Gateway, _ = netip.ParseAddr(gw)
		n.IPRange, _ = netip.ParsePrefix(rng)
		n.Subnet6, _ = netip.ParsePrefix(subnet6)
		d, err := n.withDefaults()
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("withDefaults(%+v) = %v, not ErrInvalid", n, err)
			}
			return
		}
		if d.Subnet.IsValid() && !d.Subnet.Contains(d.Gateway) {
			t.Fatalf("accepted gateway %s outside %s", d.Gateway, d.Subnet)
		}
		if d.Bridge != "" && (len(d.Bridge) > 15 || d.Bridge == "") {
			t.Fatalf("accepted bridge name %q", d.Bridge)
		}
		if checkName("network", d.Name) != nil {
			t.Fatalf("accepted network name %q", d.Name)
		}
	})
}

// FuzzStateDecoder: a record file of any content is decoded or refused with
// a clear error; it never panics, and never yields a record without a version.
func FuzzStateDecoder(f *testing.F) {
	good, _ := json.Marshal(endpointRecord{Version: 1, State: stateAttached, Endpoint: Endpoint{ID: "x", Network: "n"}})
	f.Add(good)
	f.Add([]byte(`{"version": 99}`))
	f.Add([]byte(`{"version": 1, "endpoint": {"addresses": ["10.0.0.1/33"]}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord("fuzz.json", b, func(r *endpointRecord) int { return r.Version })
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrStateVersion) {
				t.Fatalf("decode error %v is neither ErrInvalid nor ErrStateVersion", err)
			}
			return
		}
		if r.Version < 1 || r.Version > stateVersion {
			t.Fatalf("accepted version %d", r.Version)
		}
	})
}
