package dns

import (
	"encoding/binary"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// The common query, answered without unpacking a message: one question of
// type A or AAAA, class IN, about a name of the network. Everything else
// (other types, reverse names, forwarded names, odd headers) goes through
// miekg/dns as before; the answers are the same either way.

// wireQuery is the part of a query message the fast path needs.
type wireQuery struct {
	id      uint16
	flags   uint16 // RD and CD are copied to the reply
	qEnd    int    // end of the question section
	qtype   uint16
	name    []byte // lower case, no trailing dot: the table's key form
	hasEDNS bool   // an additional record (OPT) follows the question
}

// parseQuery reads a query's header and single question into q, with the
// name in nameBuf; ok is false for anything but a plain query.
func parseQuery(b []byte, nameBuf []byte, q *wireQuery) bool {
	if len(b) < 12 {
		return false
	}
	h := binary.BigEndian.Uint16(b[2:])
	if h&0x8000 != 0 || (h>>11)&0xf != mdns.OpcodeQuery {
		return false // a response, or not a standard query
	}
	qd, an, ns, ar := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:]), binary.BigEndian.Uint16(b[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return false
	}
	q.id, q.flags, q.hasEDNS = binary.BigEndian.Uint16(b), h, ar == 1
	name := nameBuf[:0]
	off := 12
	for {
		if off >= len(b) {
			return false
		}
		l := int(b[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(b) || len(name)+l+1 > 254 {
			return false // a compression pointer (none belongs in a query) or garbage
		}
		if len(name) > 0 {
			name = append(name, '.')
		}
		for _, c := range b[off : off+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			} else if c == '.' || c == 0 {
				return false // not representable in the table's key form
			}
			name = append(name, c)
		}
		off += l
	}
	if off+4 > len(b) || binary.BigEndian.Uint16(b[off+2:]) != mdns.ClassINET {
		return false
	}
	q.qtype = binary.BigEndian.Uint16(b[off:])
	q.qEnd = off + 4
	q.name = name
	return true
}

// appendReply writes the reply to q (whose message is req) into out: the
// header as miekg's SetReply makes it, authoritative, recursion available,
// rcode, the question copied, then one answer per address of the
// question's type, named by a pointer to the question. It returns nil when
// the answer would not fit in a 512-byte message (the slow path truncates).
func appendReply(out []byte, req []byte, q *wireQuery, rcode int, addrs []netip.Addr, ttl uint32) []byte {
	size, count := q.qEnd, 0
	for _, a := range addrs {
		if q.wants(a) {
			size += 12 + a.BitLen()/8
			count++
		}
	}
	if size > mdns.MinMsgSize {
		return nil
	}
	out = out[:0]
	flags := uint16(0x8000) | uint16(mdns.OpcodeQuery)<<11 | 0x0400 /* AA */ | q.flags&0x0100 /* RD */ |
		0x0080 /* RA */ | q.flags&0x0010 /* CD */ | uint16(rcode&0xf)
	out = binary.BigEndian.AppendUint16(out, q.id)
	out = binary.BigEndian.AppendUint16(out, flags)
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(count))
	out = binary.BigEndian.AppendUint32(out, 0) // NS, AR
	out = append(out, req[12:q.qEnd]...)
	for _, a := range addrs {
		if !q.wants(a) {
			continue
		}
		out = append(out, 0xc0, 12) // the question's name
		out = binary.BigEndian.AppendUint16(out, q.qtype)
		out = binary.BigEndian.AppendUint16(out, mdns.ClassINET)
		out = binary.BigEndian.AppendUint32(out, ttl)
		if a.Is4() {
			b := a.As4()
			out = binary.BigEndian.AppendUint16(out, 4)
			out = append(out, b[:]...)
		} else {
			b := a.As16()
			out = binary.BigEndian.AppendUint16(out, 16)
			out = append(out, b[:]...)
		}
	}
	return out
}

// wants reports whether address a answers q (A: IPv4, AAAA: IPv6).
func (q *wireQuery) wants(a netip.Addr) bool {
	return q.qtype == mdns.TypeA && a.Is4() || q.qtype == mdns.TypeAAAA && a.Is6()
}

// servfail writes a SERVFAIL reply to the query in req (its header and
// question, which parseQuestionEnd found to end at qEnd) into out.
func servfail(out, req []byte, qEnd int) []byte {
	out = append(out[:0], req[:qEnd]...)
	h := binary.BigEndian.Uint16(req[2:])
	binary.BigEndian.PutUint16(out[2:], 0x8000|h&0x7900 /* opcode, RD */ |0x0080|h&0x0010|mdns.RcodeServerFailure)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint32(out[6:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	return out
}

// questionEnd returns where the single question of message b ends, or -1.
func questionEnd(b []byte) int {
	if len(b) < 12 || binary.BigEndian.Uint16(b[4:]) != 1 {
		return -1
	}
	off := 12
	for {
		if off >= len(b) {
			return -1
		}
		l := int(b[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(b) {
			return -1
		}
		off += l
	}
	if off+4 > len(b) {
		return -1
	}
	return off + 4
}

// sameQuestion compares two questions in wire form (name, type, class),
// names case-insensitively.
func sameQuestion(a, b []byte) bool {
	if len(a) != len(b) || len(a) < 4 || string(a[len(a)-4:]) != string(b[len(b)-4:]) {
		return false
	}
	for i := range len(a) - 4 {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
