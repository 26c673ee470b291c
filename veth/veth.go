package veth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/ifname"
	"github.com/sandnet/sandnet/netns"
)

// Sentinel errors, shared with the rest of sandnet.
var (
	ErrInvalid = errkind.Invalid
	ErrExists  = errkind.Exists
)

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h): the
// interface makes no IPv6 link-local address of its own.
const addrGenModeNone = 1

// Pair describes a veth pair to create. Zero values mean defaults.
type Pair struct {
	// Name of the end that stays in the host namespace. Required, ≤ 15 bytes.
	Name string
	// PeerName is the name of the end inside PeerNS; default "eth0".
	PeerName string
	// PeerNS is the namespace the peer is created in. Required.
	PeerNS *netns.NS
	// MTU of both ends; 0 leaves the kernel default (1500).
	MTU int
	// PeerMAC is the peer's MAC address; nil lets the kernel choose.
	PeerMAC net.HardwareAddr
	// Master, if set, is the index of a bridge in the host namespace that the
	// host end joins as it is created. A bridge port carries no address of
	// its own, so the host end then gets no IPv6 link-local address either
	// (addrgenmode none): it sends no duplicate address detection, MLD
	// report or router solicitation, which the bridge would flood to every
	// other port, a cost that grows with the number of ports.
	Master int
	// MasterName is the bridge's name, for the explanation only.
	MasterName string
	// Up brings the host end up as it is created.
	Up bool
	// Queues is the number of transmit and of receive queues of each end;
	// 0 means 1. A veth uses one of each unless told more (ethtool -L):
	// ip link's default allocates one per CPU, and the kernel then waits
	// for an RCU grace period to drop the transmit queues it will not use,
	// with the kernel's lock held (see newLinkRequest).
	Queues int
	// Replace removes a veth already called Name in the host namespace (a
	// leftover of an earlier pair the caller owns by name: a crash, or a
	// sandbox that kept it) and makes the pair again; a link of another
	// kind there is still ErrExists.
	Replace bool
}

func (p *Pair) defaults() error {
	if p.PeerName == "" {
		p.PeerName = "eth0"
	}
	if p.PeerNS == nil {
		return fmt.Errorf("veth %q: no peer namespace: %w", p.Name, ErrInvalid)
	}
	if err := errors.Join(ifname.Check(p.Name), ifname.Check(p.PeerName)); err != nil {
		return fmt.Errorf("veth %q: %w", p.Name, err)
	}
	if p.Queues < 0 || p.Queues > 4096 {
		return fmt.Errorf("veth %q: %d queues out of range: %w", p.Name, p.Queues, ErrInvalid)
	}
	if p.Queues == 0 {
		p.Queues = 1
	}
	if p.MTU < 0 || p.MTU > 65535 {
		return fmt.Errorf("veth %q: mtu %d out of range: %w", p.Name, p.MTU, ErrInvalid)
	}
	return nil
}

// Create makes the pair: Name in host, PeerName in PeerNS, in one netlink
// request that also carries the MTU, the peer's MAC, the master (the host
// end joins the bridge as it is made) and the up flag, and returns the
// host end as the kernel echoes it back. With a master, one more request
// turns off IPv6 link-local addressing on the host end (the kernel takes
// no addrgenmode in a request that makes a link). An existing link called
// Name in host yields an error wrapping ErrExists, unless Replace is set
// and it is a veth.
//
// Equivalent to: ip link add NAME numtxqueues Q numrxqueues Q [mtu M] [master BR] [up] type veth peer name PEER numtxqueues Q numrxqueues Q [address MAC] netns NS
// (then, with a master: ip link set NAME addrgenmode none)
func Create(ctx context.Context, host *netns.NS, p Pair) (netlink.Link, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	sock, err := host.RouteSocket()
	if err != nil {
		return nil, err
	}
	explain.Say(ctx, "%s", host.Shell(command(p)))
	msgs, err := newLinkRequest(p, sock).Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		if errors.Is(err, unix.EEXIST) && p.Replace {
			if h, herr := host.Netlink(); herr == nil {
				if l, lerr := h.LinkByName(p.Name); lerr == nil && l.Type() == "veth" {
					if err := Delete(ctx, host, p.Name); err != nil {
						return nil, err
					}
					p.Replace = false
					return Create(ctx, host, p)
				}
			}
		}
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating veth %s (peer %s in %s): %w", p.Name, p.PeerName, p.PeerNS, ErrExists)
		}
		return nil, fmt.Errorf("creating veth %s (peer %s in %s): %w", p.Name, p.PeerName, p.PeerNS, err)
	}
	var link netlink.Link
	if len(msgs) > 0 {
		link, err = netlink.LinkDeserialize(nil, msgs[0])
	}
	if link == nil || err != nil || link.Attrs().Name != p.Name {
		// A kernel that does not echo (before 6.3): look the new link up.
		h, herr := host.Netlink()
		if herr == nil {
			link, herr = h.LinkByName(p.Name)
		}
		if herr != nil {
			return nil, fmt.Errorf("finding veth %s in %s after creating it: %w", p.Name, host, herr)
		}
	}
	if p.Master != 0 {
		link.Attrs().MasterIndex = p.Master // echoed before the kernel joined it to the bridge
		// Before the peer comes up: until it has a carrier, the host end
		// has no IPv6 address to detect or report. A bridge port carries
		// no address of its own, so without a link-local one it sends no
		// duplicate address detection, MLD report or router solicitation,
		// which the bridge would flood to every other port.
		explain.Say(ctx, "%s", host.Shell("ip link set "+p.Name+" addrgenmode none"))
		h, err := host.Netlink()
		if err == nil {
			err = h.LinkSetIP6AddrGenMode(link, addrGenModeNone)
		}
		if err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, errors.Join(fmt.Errorf("setting addrgenmode none on %s: %w", p.Name, err), Delete(context.WithoutCancel(ctx), host, p.Name))
		}
	}
	return link, nil
}

// newLinkRequest is the RTM_NEWLINK request that makes pair p, on sock,
// asking the kernel to echo the new host end back.
func newLinkRequest(p Pair, sock *nl.SocketHandle) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sock}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	if p.Up {
		msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(p.Name)))
	// The queue counts the pair will use, given up front: a veth made
	// with more (one per CPU, the default) lowers them to one as it is
	// registered, and each end then waits for an expedited RCU grace
	// period under RTNL (netif_set_real_num_tx_queues), which every CPU
	// must answer: the costliest part of making the pair, and longer the
	// busier the other CPUs are.
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(uint32(p.Queues))))
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(uint32(p.Queues))))
	if p.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(p.MTU))))
	}
	if p.Master != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(p.Master))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	peer := info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(p.PeerName))
	peer.AddRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(uint32(p.Queues)))
	peer.AddRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(uint32(p.Queues)))
	if p.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(p.MTU)))
	}
	if p.PeerMAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(p.PeerMAC))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(p.PeerNS.Fd())))
	req.AddData(info)
	return req
}

func command(p Pair) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ip link add %s numtxqueues %d numrxqueues %d", p.Name, p.Queues, p.Queues)
	if p.MTU > 0 {
		fmt.Fprintf(&b, " mtu %d", p.MTU)
	}
	if p.MasterName != "" {
		fmt.Fprintf(&b, " master %s", p.MasterName)
	}
	if p.Up {
		b.WriteString(" up")
	}
	fmt.Fprintf(&b, " type veth peer name %s numtxqueues %d numrxqueues %d", p.PeerName, p.Queues, p.Queues)
	if p.MTU > 0 {
		fmt.Fprintf(&b, " mtu %d", p.MTU)
	}
	if p.PeerMAC != nil {
		fmt.Fprintf(&b, " address %s", p.PeerMAC)
	}
	if p.PeerNS.Name() != "" {
		fmt.Fprintf(&b, " netns %s", p.PeerNS.Name())
	} else {
		fmt.Fprintf(&b, " netns %s", p.PeerNS.Path())
	}
	return b.String()
}

// Delete removes the veth called name in ns, and with it its peer. A link
// that is already gone is not an error.
//
// Equivalent to: ip link del NAME
func Delete(ctx context.Context, ns *netns.NS, name string) error {
	// A socket of its own: the deletion keeps it for the ~16 ms the kernel
	// takes, and concurrent deletions then overlap instead of queueing on
	// a shared one. One request, by name (the netlink package's LinkDel
	// looks the index up first).
	sock, err := ns.OwnRouteSocket()
	if err != nil {
		return err
	}
	defer sock.Close()
	explain.Say(ctx, "%s", ns.Shell("ip link del "+name))
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sock}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting veth %s in %s: %w", name, ns, err)
	}
	return nil
}

// Unregister removes the veth called name in ns, and with it its peer, and
// returns as soon as the kernel has taken both out of their namespaces: the
// names are free and the addresses, routes and bridge port are gone. Delete
// (like ip link del) also waits for what the kernel does after that, about
// 16 ms: an RCU grace period before it frees the devices. Unregister leaves
// that wait to a goroutine of its own, and closes done when it is over. A
// link that is already gone is not an error (and done is closed at once).
func Unregister(ctx context.Context, ns *netns.NS, name string) (done <-chan struct{}, err error) {
	sock, err := ns.OwnRouteSocket()
	if err != nil {
		return nil, err
	}
	explain.Say(ctx, "%s", ns.Shell("ip link del "+name))
	fd := sock.Socket.GetFd()
	// The kernel announces the deletion to the link group while the
	// request is still in its hands: this socket listens to the group, and
	// the ack comes to it too.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.RTNLGRP_LINK); err != nil {
		sock.Close()
		return nil, fmt.Errorf("deleting veth %s in %s: listening to link changes: %w", name, ns, err)
	}
	// A bounded wait per receive, so that a request the kernel never took
	// (sendto failed) cannot leave the reader waiting for an answer.
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		sock.Close()
		return nil, fmt.Errorf("deleting veth %s in %s: %w", name, ns, err)
	}
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))

	sent := make(chan error, 1)   // the request's sendto, over once the kernel is
	read := make(chan struct{})   // the reader is done with the socket
	closed := make(chan struct{}) // done
	go func() {
		// The kernel does the whole deletion inside this call, grace period
		// included.
		sent <- unix.Sendto(fd, req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		<-read
		sock.Close()
		close(closed)
	}()
	err = awaitUnregister(fd, req.Seq, name, sent)
	// Out of the group at once: the socket stays open until the kernel is
	// done, and every announcement of the namespace's links (sent under the
	// kernel's lock) would be copied to it meanwhile.
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_DROP_MEMBERSHIP, unix.RTNLGRP_LINK)
	close(read)
	if err == errNoAnswer {
		// The request is over but its answer was lost (a full receive
		// buffer): whether the link is gone says how it went.
		err = nil
		if h, herr := ns.Netlink(); herr != nil {
			err = herr
		} else if _, lerr := h.LinkByName(name); lerr == nil {
			err = errors.New("the link is still there, and the kernel's answer was lost")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("deleting veth %s in %s: %w", name, ns, err)
	}
	return closed, nil
}

// errNoAnswer: the deletion request is over and neither its announcement
// nor its answer came.
var errNoAnswer = errors.New("the kernel's answer did not come")

// awaitUnregister reads fd until the kernel announces that the link called
// name is gone, or answers request seq: nil for a deletion (or a link
// already gone), else the kernel's error. sent gives the request's sendto
// result once the call is over.
func awaitUnregister(fd int, seq uint32, name string, sent <-chan error) error {
	buf := make([]byte, 32<<10)
	sendDone := false
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			if !sendDone {
				select {
				case err := <-sent:
					if err != nil {
						return err
					}
					// The kernel has answered: the answer is queued.
					sendDone = true
				default:
				}
			} else {
				return errNoAnswer
			}
			continue
		case err == unix.ENOBUFS:
			// Announcements were lost (a burst of link changes): the
			// answer to the request still comes.
			continue
		case err != nil:
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			switch {
			case m.Header.Type == unix.RTM_DELLINK && linkNamed(m.Data, name):
				return nil
			case m.Header.Type == unix.NLMSG_ERROR && m.Header.Seq == seq:
				if len(m.Data) < 4 {
					return errors.New("short netlink error message")
				}
				errno := -int32(nl.NativeEndian().Uint32(m.Data[:4]))
				if errno == 0 || unix.Errno(errno) == unix.ENODEV {
					return nil
				}
				return unix.Errno(errno)
			}
		}
	}
}

// linkNamed says whether the link message data (ifinfomsg and attributes)
// names the link name.
func linkNamed(data []byte, name string) bool {
	if len(data) < unix.SizeofIfInfomsg {
		return false
	}
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return false
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.IFLA_IFNAME {
			return strings.TrimRight(string(a.Value), "\x00") == name
		}
	}
	return false
}
