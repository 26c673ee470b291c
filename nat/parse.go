package nat

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePort parses a published port in Docker's -p syntax and returns one
// mapping per port:
//
//	80                      container port 80 on a free host port
//	8080:80                 host port 8080 to container port 80, TCP
//	8080:80/udp             UDP (also /tcp, /sctp)
//	127.0.0.1:8080:80       only on the host address 127.0.0.1
//	127.0.0.1::80           on 127.0.0.1, a free host port
//	[::1]:8080:80           IPv6 host address, in brackets
//	8000-8010:8000-8010     a range; both sides have the same length
//
// A host port of 0 means "pick a free one" when the mapping is published.
// Malformed input is an error wrapping ErrInvalid.
func ParsePort(spec string) ([]PortMapping, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("port %q: %s: %w", spec, fmt.Sprintf(format, args...), ErrInvalid)
	}
	rest, proto := spec, "tcp"
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		rest, proto = rest[:i], strings.ToLower(rest[i+1:])
	}
	if err := checkProto(proto); err != nil {
		return nil, bad("%v", err)
	}
	var hostIP netip.Addr
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return nil, bad("an IPv6 host address is written [ADDR]:HOSTPORT:PORT")
		}
		a, err := netip.ParseAddr(rest[1:end])
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return nil, bad("%q is not an IPv6 address", rest[1:end])
		}
		hostIP, rest = a, rest[end+2:]
		if !strings.Contains(rest, ":") {
			return nil, bad("a host address needs HOSTPORT:PORT after it")
		}
	}
	parts := strings.Split(rest, ":")
	var hostPart, ctrPart string
	switch len(parts) {
	case 1:
		ctrPart = parts[0]
	case 2:
		hostPart, ctrPart = parts[0], parts[1]
	case 3:
		if hostIP.IsValid() {
			return nil, bad("too many ':'")
		}
		a, err := netip.ParseAddr(parts[0])
		if err != nil || !a.Is4() {
			return nil, bad("%q is not an IPv4 address (write IPv6 in brackets)", parts[0])
		}
		hostIP, hostPart, ctrPart = a, parts[1], parts[2]
	default:
		return nil, bad("too many ':' (write an IPv6 address in brackets)")
	}
	cLo, cHi, err := parseRange(ctrPart, false)
	if err != nil {
		return nil, bad("container port: %v", err)
	}
	hLo, hHi := uint16(0), uint16(0)
	if hostPart != "" {
		if hLo, hHi, err = parseRange(hostPart, false); err != nil {
			return nil, bad("host port: %v", err)
		}
		if hHi-hLo != cHi-cLo {
			return nil, bad("host range %d-%d and container range %d-%d differ in length", hLo, hHi, cLo, cHi)
		}
	}
	var out []PortMapping
	for i := 0; i <= int(cHi-cLo); i++ {
		m := PortMapping{HostIP: hostIP, ContainerPort: cLo + uint16(i), Proto: proto}
		if hLo != 0 {
			m.HostPort = hLo + uint16(i)
		}
		out = append(out, m)
	}
	return out, nil
}

func parseRange(s string, _ bool) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePortNum(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePortNum(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %s is backwards", s)
		}
	}
	return lo, hi, nil
}

func parsePortNum(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

func checkProto(p string) error {
	switch p {
	case "tcp", "udp", "sctp":
		return nil
	}
	return fmt.Errorf("protocol %q: want tcp, udp or sctp", p)
}

// String formats m in the syntax ParsePort reads.
func (m PortMapping) String() string {
	var b strings.Builder
	if m.HostIP.IsValid() {
		if m.HostIP.Is6() {
			b.WriteString("[" + m.HostIP.String() + "]:")
		} else {
			b.WriteString(m.HostIP.String() + ":")
		}
	}
	if m.HostPort != 0 {
		b.WriteString(strconv.Itoa(int(m.HostPort)))
	}
	if m.HostIP.IsValid() || m.HostPort != 0 {
		b.WriteString(":")
	}
	b.WriteString(strconv.Itoa(int(m.ContainerPort)))
	b.WriteString("/" + m.proto())
	return b.String()
}

func (m PortMapping) proto() string {
	if m.Proto == "" {
		return "tcp"
	}
	return m.Proto
}
