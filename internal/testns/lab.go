package testns

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/netns"
)

// Segment is a physical network for tests: a "switch" namespace holding a
// bridge; namespaces that play machines plug into it with a veth pair, the
// way a cable goes from a NIC to a switch port. Everything goes away with the
// test (the switch namespace takes its bridge and the cables' ends with it).
type Segment struct {
	// NS is the switch namespace; Bridge is the switch itself in it.
	NS     *netns.NS
	Bridge string

	mu    sync.Mutex
	ports int
}

// NewSegment makes a switch namespace "snt-<tag>-..." with a bridge "sw", up.
func NewSegment(t testing.TB, tag string) *Segment {
	t.Helper()
	s := &Segment{NS: New(t, tag), Bridge: "sw"}
	Run(t, s.NS, "ip", "link", "add", s.Bridge, "type", "bridge")
	Run(t, s.NS, "ip", "link", "set", s.Bridge, "up")
	return s
}

// Plug connects ns to the switch: a veth pair whose end in ns is called
// ifName (up, with addrs) and whose other end is a port of the switch.
func (s *Segment) Plug(t testing.TB, ns *netns.NS, ifName string, addrs ...netip.Prefix) {
	t.Helper()
	s.mu.Lock()
	s.ports++
	port := fmt.Sprintf("port%d", s.ports)
	s.mu.Unlock()
	Run(t, s.NS, "ip", "link", "add", port, "master", s.Bridge, "up", "type", "veth", "peer", "name", ifName, "netns", ns.Path())
	for _, a := range addrs {
		Run(t, ns, "ip", "addr", "add", a.String(), "dev", ifName)
	}
	Run(t, ns, "ip", "link", "set", ifName, "up")
	Run(t, ns, "ip", "link", "set", "lo", "up")
}

// Machine makes a namespace "snt-<tag>-..." plugged into the switch as eth0
// with addrs: one more computer on the physical network.
func (s *Segment) Machine(t testing.TB, tag string, addrs ...netip.Prefix) *netns.NS {
	t.Helper()
	ns := New(t, tag)
	s.Plug(t, ns, "eth0", addrs...)
	return ns
}
