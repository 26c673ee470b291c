package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Pool is one address family's range for a network.
//
// The zero value of every optional field means "not set". A Pool is plain data;
// Validate checks it, and Store.Allocate validates every pool it is given.
type Pool struct {
	// Subnet is the network's prefix, in masked form (10.88.0.0/24, fd00:88::/64).
	// Leases carry this prefix length. Required.
	Subnet netip.Prefix
	// Range, when set, restricts what is handed out to this prefix, which must lie
	// inside Subnet (Docker's --ip-range). Only Subnet's own special addresses are
	// excluded: with Subnet 10.88.0.0/16 and Range 10.88.1.0/24, 10.88.1.0 is handed out.
	Range netip.Prefix
	// Gateway, when set, is never handed out. It must be a host address of Subnet.
	Gateway netip.Addr
	// Reserved addresses are never handed out. Each must lie inside Subnet.
	Reserved []netip.Addr
}

// Validate reports every problem with p, each as an error wrapping ErrInvalid
// (joined with errors.Join when there are several).
func (p Pool) Validate() error {
	if !p.Subnet.IsValid() {
		return fmt.Errorf("validating pool: subnet is not set: %w", ErrInvalid)
	}
	sub := p.Subnet
	if sub.Addr().Zone() != "" || sub.Addr().Is4In6() {
		return fmt.Errorf("validating pool %s: subnet must be a plain IPv4 or IPv6 prefix: %w", sub, ErrInvalid)
	}
	if m := sub.Masked(); m != sub {
		return fmt.Errorf("validating pool %s: subnet has host bits set (want %s): %w", sub, m, ErrInvalid)
	}
	var errs []error
	bad := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		errs = append(errs, fmt.Errorf("validating pool %s: %s: %w", sub, msg, ErrInvalid))
	}
	if r := p.Range; r.IsValid() {
		switch {
		case r.Addr().Is4() != sub.Addr().Is4() || r.Addr().Zone() != "" || r.Addr().Is4In6():
			bad("range %s is not of the subnet's address family", r)
		case r.Masked() != r:
			bad("range %s has host bits set (want %s)", r, r.Masked())
		case r.Bits() < sub.Bits() || !sub.Contains(r.Addr()):
			bad("range %s does not lie inside the subnet", r)
		}
	}
	if gw := p.Gateway; gw.IsValid() {
		switch {
		case !sub.Contains(gw):
			bad("gateway %s is outside the subnet", gw)
		case isSpecial(sub, gw):
			bad("gateway %s is the subnet's %s", gw, specialName(sub, gw))
		}
	}
	for _, a := range p.Reserved {
		if !sub.Contains(a) {
			bad("reserved address %s is outside the subnet", a)
		}
	}
	return errors.Join(errs...)
}

// span returns the first and last address that p may hand out, before exclusions.
func (p Pool) span() (first, last netip.Addr) {
	r := p.Subnet
	if p.Range.IsValid() {
		r = p.Range
	}
	return r.Addr(), lastAddr(r)
}

// usable reports whether a may be handed out from p (ignoring whether it is taken).
// When it may not, the reason says why, for an error message.
func (p Pool) usable(a netip.Addr) (ok bool, reason string) {
	first, last := p.span()
	if !a.IsValid() || a.Zone() != "" || a.BitLen() != first.BitLen() || a.Less(first) || last.Less(a) {
		if p.Range.IsValid() {
			return false, fmt.Sprintf("is outside range %s", p.Range)
		}
		return false, fmt.Sprintf("is outside subnet %s", p.Subnet)
	}
	switch {
	case isSpecial(p.Subnet, a):
		return false, "is the subnet's " + specialName(p.Subnet, a)
	case a == p.Gateway:
		return false, "is the gateway"
	case slices.Contains(p.Reserved, a):
		return false, "is reserved"
	}
	return true, ""
}

// excluded reports whether a, inside p's span, must never be handed out.
func (p Pool) excluded(a netip.Addr) bool {
	return isSpecial(p.Subnet, a) || a == p.Gateway || slices.Contains(p.Reserved, a)
}

// isSpecial reports whether a is an address of sub that is never a host's:
// for IPv4 the network and broadcast addresses (not for /31 and /32, RFC 3021),
// for IPv6 the subnet-router anycast address (not for /127 and /128, RFC 6164).
func isSpecial(sub netip.Prefix, a netip.Addr) bool {
	if sub.Bits() >= a.BitLen()-1 {
		return false
	}
	if a == sub.Addr() {
		return true
	}
	return a.Is4() && a == lastAddr(sub)
}

func specialName(sub netip.Prefix, a netip.Addr) string {
	switch {
	case a.Is6():
		return "subnet-router anycast address"
	case a == sub.Addr():
		return "network address"
	default:
		return "broadcast address"
	}
}

// lastAddr returns the highest address of the masked prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
