package dns

import (
	"fmt"
	"net/netip"
	"strings"
)

// CheckName validates a hostname or alias (RFC 1123 labels; '_' allowed).
// A bad one is ErrInvalid.
func CheckName(name string) error {
	if len(name) > 253 {
		return invalidf("DNS name %q is longer than 253 bytes", name)
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return invalidf("DNS name %q: label %q must be 1-63 letters, digits or '-', not starting or ending with '-'", name, label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return invalidf("DNS name %q contains %q", name, r)
			}
		}
	}
	return nil
}

// CheckResolvConf validates what a caller asks to put into a resolv.conf:
// a newline or a space in a search domain or an option would add lines or
// words of the caller's choosing there, so only plain servers, domain
// names and options in resolv.conf's syntax get through. A bad one is
// ErrInvalid.
func CheckResolvConf(servers []netip.Addr, search, options []string) error {
	for _, d := range servers {
		if !d.IsValid() || d.Zone() != "" {
			return invalidf("DNS server %q is not a plain IP address", d)
		}
	}
	for _, s := range search {
		if s == "." {
			continue
		}
		if err := CheckName(s); err != nil {
			return invalidf("DNS search domain %q: a domain name, please", s)
		}
	}
	for _, opt := range options {
		if opt == "" || len(opt) > 64 || strings.IndexFunc(opt, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '-' || r == '_' || r == '.')
		}) >= 0 {
			return invalidf("DNS option %q: use resolv.conf's option syntax (e.g. ndots:2)", opt)
		}
	}
	return nil
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrInvalid)...)
}
