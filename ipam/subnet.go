package ipam

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// CheckSubnet validates a network's subnet of one address family (v6), its
// gateway and its range, and returns the gateway, by default the subnet's
// first address. A zero subnet is valid without gateway and range (the
// network lacks that family). Mistakes are ErrInvalid.
func CheckSubnet(subnet netip.Prefix, gw netip.Addr, rng netip.Prefix, v6 bool) (netip.Addr, error) {
	fam := "subnet"
	if v6 {
		fam = "subnet6"
	}
	if !subnet.IsValid() {
		if gw.IsValid() || rng.IsValid() {
			return gw, invalidf("gateway or range given without %s", fam)
		}
		return gw, nil
	}
	if subnet.Addr().Is6() != v6 || subnet.Addr().Is4In6() {
		return gw, invalidf("%s %s is of the wrong address family", fam, subnet)
	}
	if subnet.Masked() != subnet {
		return gw, invalidf("%s %s has host bits set (did you mean %s?)", fam, subnet, subnet.Masked())
	}
	if why := reservedRange(subnet); why != "" {
		return gw, invalidf("%s %s %s: a network needs unicast addresses of its own", fam, subnet, why)
	}
	max := 30
	if v6 {
		max = 126
	}
	if subnet.Bits() > max {
		return gw, invalidf("%s %s is too small for a gateway and a sandbox", fam, subnet)
	}
	if !gw.IsValid() {
		gw = subnet.Addr().Next()
	}
	if !subnet.Contains(gw) {
		return gw, invalidf("gateway %s is outside %s %s", gw, fam, subnet)
	}
	if gw == subnet.Addr() || (!v6 && gw == lastAddr(subnet)) {
		return gw, invalidf("gateway %s is the network or broadcast address of %s", gw, subnet)
	}
	if rng.IsValid() {
		if rng.Masked() != rng || !subnet.Contains(rng.Addr()) || rng.Bits() < subnet.Bits() {
			return gw, invalidf("range %s is not a subnet of %s", rng, subnet)
		}
	}
	return gw, nil
}

// reserved are the ranges no network's subnet may touch: a gateway there
// would be loopback, multicast, link-local (the kernel's own, per link),
// or everything at once.
var reserved = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "overlaps 0.0.0.0/8 (\"this network\", not routable)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "overlaps loopback 127.0.0.0/8"},
	{netip.MustParsePrefix("169.254.0.0/16"), "overlaps link-local 169.254.0.0/16"},
	{netip.MustParsePrefix("224.0.0.0/4"), "overlaps multicast 224.0.0.0/4"},
	{netip.MustParsePrefix("240.0.0.0/4"), "overlaps reserved 240.0.0.0/4 (and broadcast)"},
	{netip.MustParsePrefix("::/127"), "overlaps the unspecified and loopback addresses ::/127"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "overlaps IPv4-mapped ::ffff:0:0/96"},
	{netip.MustParsePrefix("fe80::/10"), "overlaps link-local fe80::/10"},
	{netip.MustParsePrefix("ff00::/8"), "overlaps multicast ff00::/8"},
}

// reservedRange says why subnet may not be a network's, or "".
func reservedRange(subnet netip.Prefix) string {
	if subnet.Bits() == 0 {
		return "is the whole address space"
	}
	for _, r := range reserved {
		if r.p.Addr().Is4() == subnet.Addr().Is4() && subnet.Overlaps(r.p) {
			return r.why
		}
	}
	return ""
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrInvalid)...)
}

// FreeSubnet returns the first IPv4 subnet of length bits in base (IPv4,
// no longer than bits) that overlaps none of taken, as netavark picks a
// new network's subnet; false if every one does.
func FreeSubnet(base netip.Prefix, bits int, taken []netip.Prefix) (netip.Prefix, bool) {
	b := base.Masked().Addr().As4()
	start, step := binary.BigEndian.Uint32(b[:]), uint32(1)<<(32-bits)
	for i := uint32(0); i < uint32(1)<<(bits-base.Bits()); i++ {
		binary.BigEndian.PutUint32(b[:], start+i*step)
		p := netip.PrefixFrom(netip.AddrFrom4(b), bits)
		if !slices.ContainsFunc(taken, func(t netip.Prefix) bool { return t.IsValid() && p.Overlaps(t) }) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
