package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestPoolValidate(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	tests := []struct {
		name string
		pool Pool
		want string // "" for valid, else a substring of the error
	}{
		{"v4", Pool{Subnet: pfx("10.88.0.0/24"), Gateway: addr("10.88.0.1")}, ""},
		{"v4 range", Pool{Subnet: pfx("10.88.0.0/16"), Range: pfx("10.88.1.0/24"), Reserved: []netip.Addr{addr("10.88.0.9")}}, ""},
		{"v6", Pool{Subnet: pfx("fd00:88::/64"), Gateway: addr("fd00:88::1")}, ""},
		{"v4 /32", Pool{Subnet: pfx("10.0.0.7/32")}, ""},
		{"no subnet", Pool{}, "subnet is not set"},
		{"unmasked", Pool{Subnet: pfx("10.88.0.1/24")}, "host bits set (want 10.88.0.0/24)"},
		{"4in6", Pool{Subnet: pfx("::ffff:10.0.0.0/104")}, "plain IPv4 or IPv6"},
		{"range outside", Pool{Subnet: pfx("10.88.0.0/24"), Range: pfx("10.89.0.0/25")}, "range 10.89.0.0/25 does not lie inside"},
		{"range larger", Pool{Subnet: pfx("10.88.0.0/24"), Range: pfx("10.88.0.0/16")}, "does not lie inside"},
		{"range unmasked", Pool{Subnet: pfx("10.88.0.0/24"), Range: pfx("10.88.0.129/25")}, "range 10.88.0.129/25 has host bits set"},
		{"range family", Pool{Subnet: pfx("10.88.0.0/24"), Range: pfx("fd00::/64")}, "address family"},
		{"gateway outside", Pool{Subnet: pfx("10.88.0.0/24"), Gateway: addr("10.88.1.1")}, "gateway 10.88.1.1 is outside the subnet"},
		{"gateway family", Pool{Subnet: pfx("10.88.0.0/24"), Gateway: addr("fd00::1")}, "outside the subnet"},
		{"gateway network", Pool{Subnet: pfx("10.88.0.0/24"), Gateway: addr("10.88.0.0")}, "network address"},
		{"gateway broadcast", Pool{Subnet: pfx("10.88.0.0/24"), Gateway: addr("10.88.0.255")}, "broadcast address"},
		{"gateway anycast", Pool{Subnet: pfx("fd00:88::/64"), Gateway: addr("fd00:88::")}, "anycast"},
		{"reserved outside", Pool{Subnet: pfx("10.88.0.0/24"), Reserved: []netip.Addr{addr("10.99.0.1")}}, "reserved address 10.99.0.1 is outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.pool.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPoolValidateReportsEveryProblem(t *testing.T) {
	p := Pool{
		Subnet:  netip.MustParsePrefix("10.88.0.0/24"),
		Range:   netip.MustParsePrefix("10.89.0.0/24"),
		Gateway: netip.MustParseAddr("10.90.0.1"),
	}
	err := p.Validate()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "range") || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("Validate() = %v, want both the range and the gateway reported", err)
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.88.0.0/24":  "10.88.0.255",
		"10.0.0.0/8":    "10.255.255.255",
		"10.0.0.4/30":   "10.0.0.7",
		"10.0.0.7/32":   "10.0.0.7",
		"0.0.0.0/0":     "255.255.255.255",
		"fd00:88::/64":  "fd00:88::ffff:ffff:ffff:ffff",
		"fd00:88::/127": "fd00:88::1",
	} {
		if got := lastAddr(netip.MustParsePrefix(in)); got != netip.MustParseAddr(want) {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
