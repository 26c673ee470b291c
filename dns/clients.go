package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/netns"
)

// A network's name server answers that network's sandboxes only: a query
// is served when it comes from an address in Config.Clients and arrives on
// Config.Interface (the network's bridge), or from the host itself: a
// datagram that arrived on loopback, a connection from a loopback address
// (only the host can send either; the host's own queries to a gateway may
// leave its masquerade with source 127.0.0.1). Anything else is dropped without
// an answer, so the server is no open resolver for a LAN neighbour routed
// to the gateway address, nor a way out for a sandbox of another network.
//
// UDP: each datagram's source and arrival interface (IP_PKTINFO) are
// checked before it is parsed (server.go's reader, with arrivalIndex). TCP: the peer's address is checked on
// accept; the arrival interface need not be, since a handshake from a
// source in the network's subnets completes only through the bridge (the
// server's answer is routed there), so a spoofed or mis-routed source
// never gets a connection.

// clientPolicy decides which queries are served.
type clientPolicy struct {
	ns      *netns.NS
	clients []netip.Prefix
	iface   string

	mu       sync.Mutex
	index    int       // iface's index, as last resolved
	resolved time.Time // when
}

// ifaceRecheck bounds how often a query from an unknown interface makes the
// policy look the interface up again (it may have been re-created, with a
// new index).
const ifaceRecheck = time.Second

func (p *clientPolicy) source(a netip.Addr) bool {
	if len(p.clients) == 0 {
		return true
	}
	a = a.Unmap()
	return slices.ContainsFunc(p.clients, func(c netip.Prefix) bool { return c.IsValid() && c.Contains(a) })
}

// datagram reports whether a UDP query from src that arrived on interface
// index is served: the host's own (arrived on loopback, whatever its
// source: the host's masquerade may have rewritten it to 127.0.0.1) or
// from a client, on the interface.
func (p *clientPolicy) datagram(src netip.Addr, index int) bool {
	if index == 1 { // loopback is always index 1 in a namespace
		return true
	}
	return p.source(src) && p.arrival(index)
}

// conn reports whether a TCP connection from src is served: from a client,
// or from the host itself (a loopback source, which only the host has).
func (p *clientPolicy) conn(src netip.Addr) bool {
	return p.source(src) || src.Unmap().IsLoopback()
}

// arrival reports whether a datagram that arrived on interface index may
// be served.
func (p *clientPolicy) arrival(index int) bool {
	if p.iface == "" {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if index == p.index {
		return true
	}
	if time.Since(p.resolved) < ifaceRecheck {
		return false
	}
	p.resolved = time.Now()
	p.index = 0
	if nl, err := p.ns.Netlink(); err == nil {
		if l, err := nl.LinkByName(p.iface); err == nil {
			p.index = l.Attrs().Index
		}
	}
	return index == p.index
}

// arrivalIndex is the interface index in a datagram's IP_PKTINFO or
// IPV6_PKTINFO control message, or -1. It reads the control messages in
// place: it runs for every query.
func arrivalIndex(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			return -1
		}
		data := oob[unix.CmsgLen(0):h.Len]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			return int(int32(binary.NativeEndian.Uint32(data[0:4]))) // struct in_pktinfo: ipi_ifindex first
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			return int(binary.NativeEndian.Uint32(data[16:20])) // struct in6_pktinfo: address, then ifindex
		}
		next := unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
		if next > len(oob) {
			return -1
		}
		oob = oob[next:]
	}
	return -1
}

// filteredListener accepts only connections from allowed sources; others
// are closed at once.
type filteredListener struct {
	net.Listener
	p *clientPolicy
}

func (l *filteredListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && l.p.conn(a.AddrPort().Addr()) {
			return c, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, not a polite close
		}
		c.Close()
	}
}
