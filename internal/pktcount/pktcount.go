// Package pktcount counts the frames a link receives, by kind, with a
// packet socket opened inside the link's namespace: what a bridge floods to
// one of its ports is what the sandbox behind it receives without having
// asked for it. Tests and the benchmark use it to count the broadcasts and
// multicasts an attach or a first packet causes.
//
// Contract: needs root (CAP_NET_RAW in the namespace). The socket is opened
// inside the namespace passed in (through netns.Do) and stays bound to the
// link there. A Counter is not safe for concurrent use.
package pktcount

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/netns"
)

// Protocols to count (the ethertype a packet socket is bound to).
const (
	All = unix.ETH_P_ALL // every frame
	ARP = unix.ETH_P_ARP // ARP requests and replies only
)

// Counts are the frames received since the last Read, by how they were
// addressed.
type Counts struct {
	Broadcast int // to ff:ff:ff:ff:ff:ff (ARP requests)
	Multicast int // to a multicast MAC (IPv6 neighbour solicitations, MLD, RS)
	Unicast   int // to this link's MAC
	Other     int // to another host's MAC (a unicast flood)
	// Solicit counts the multicasts to a solicited-node group
	// (33:33:ff:xx:xx:xx): IPv6 neighbour solicitations. They are
	// counted in Multicast too.
	Solicit int
}

// Flooded is what a bridge delivers to a port without the port's host
// being the destination: broadcasts, multicasts and unicast floods.
func (c Counts) Flooded() int { return c.Broadcast + c.Multicast + c.Other }

// Add returns the sum of c and d.
func (c Counts) Add(d Counts) Counts {
	return Counts{c.Broadcast + d.Broadcast, c.Multicast + d.Multicast, c.Unicast + d.Unicast, c.Other + d.Other, c.Solicit + d.Solicit}
}

func (c Counts) String() string {
	return fmt.Sprintf("%d broadcast, %d multicast, %d unicast flood, %d to itself", c.Broadcast, c.Multicast, c.Other, c.Unicast)
}

// Counter is a packet socket on one link.
type Counter struct {
	fd int
}

// Open opens a packet socket for protocol proto (All, ARP) on the link
// called ifName in ns. Frames the link sends itself are not counted.
func Open(ns *netns.NS, ifName string, proto uint16) (*Counter, error) {
	c := &Counter{fd: -1}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(proto)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening a packet socket on %s in %s: %w", ifName, ns, err)
	}
	return c, nil
}

// Read counts (and discards) the frames queued on the socket since the
// last Read or Open.
func (c *Counter) Read() (Counts, error) {
	var n Counts
	buf := make([]byte, 64)
	for {
		k, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC)
		if errors.Is(err, unix.EAGAIN) {
			return n, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("reading the packet socket: %w", err)
		}
		ll, _ := from.(*unix.SockaddrLinklayer)
		if ll == nil {
			continue
		}
		switch ll.Pkttype {
		case unix.PACKET_BROADCAST:
			n.Broadcast++
		case unix.PACKET_MULTICAST:
			n.Multicast++
			if k >= 3 && buf[0] == 0x33 && buf[1] == 0x33 && buf[2] == 0xff {
				n.Solicit++
			}
		case unix.PACKET_HOST:
			n.Unicast++
		case unix.PACKET_OTHERHOST:
			n.Other++
		}
	}
}

// Close closes the socket; a second Close does nothing.
func (c *Counter) Close() error {
	if c == nil || c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// SoftnetDropped sums the second column of /proc/net/softnet_stat over all
// CPUs: the packets the kernel dropped because a CPU's backlog queue was
// full (net.core.netdev_max_backlog). The file is not per network
// namespace: every namespace reads the machine's counters, so a rise may
// come from anything running on the machine, and no rise means no packet
// of anyone's was dropped there.
func SoftnetDropped() (uint64, error) {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/net/softnet_stat: %w", err)
		}
		sum += v
	}
	return sum, nil
}
