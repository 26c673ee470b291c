package sandnet

import (
	"path/filepath"
	"strings"
)

// checkFileOptions validates what AttachOptions writes into the sandbox's
// resolv.conf and hosts files: a newline or a space in a search domain,
// an option or a host name would add lines or words of the caller's
// choosing there, so only plain names get through.
func checkFileOptions(o *AttachOptions) error {
	for _, d := range o.DNS {
		if !d.IsValid() || d.Zone() != "" {
			return invalidf("DNS server %q is not a plain IP address", d)
		}
	}
	for _, s := range o.DNSSearch {
		if s == "." {
			continue
		}
		if err := checkDNSName(s); err != nil {
			return invalidf("DNS search domain %q: a domain name, please", s)
		}
	}
	for _, opt := range o.DNSOptions {
		if opt == "" || len(opt) > 64 || strings.IndexFunc(opt, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '-' || r == '_' || r == '.')
		}) >= 0 {
			return invalidf("DNS option %q: use resolv.conf's option syntax (e.g. ndots:2)", opt)
		}
	}
	for name, a := range o.ExtraHosts {
		if err := checkDNSName(name); err != nil {
			return err
		}
		if !a.IsValid() {
			return invalidf("extra host %q has no address", name)
		}
	}
	for _, p := range []string{o.ResolvConfPath, o.HostsPath} {
		if p != "" && (!filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsAny(p, "\x00\n\r")) {
			return invalidf("file path %q: an absolute, clean path, please", p)
		}
	}
	return nil
}
