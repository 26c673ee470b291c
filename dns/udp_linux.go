package dns

import (
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpSocket is the server's UDP socket, served the way dnsmasq serves its
// own: one thread blocks in the kernel until queries arrive (recvmmsg),
// answers the batch it got and sends the answers in one call (sendmmsg).
// It does not go through the runtime's network poller: a parked goroutine
// costs a wake-up of the poller and a hand-off between threads per batch,
// which at tens of thousands of queries per second is most of the time
// spent outside the kernel.
type udpSocket struct {
	fd     int
	closed atomic.Bool
	// ownThread: while queries keep coming, the reader blocks in the
	// kernel without telling the runtime (a raw system call), so its thread
	// keeps its P (see Config.OwnThread).
	ownThread bool
	hot       bool // the last wait got queries (ownThread only)
}

// bindSocket makes a blocking UDP or TCP (listening) socket bound to ap, in
// the calling thread's namespace (the caller runs it inside ns.Do).
func bindSocket(ap netip.AddrPort, typ int) (int, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	fail := func(err error) (int, error) {
		unix.Close(fd)
		return -1, err
	}
	// IP_FREEBIND: an IPv6 gateway may still be tentative (DAD) when the
	// first sandbox attaches; the socket works as soon as the address does.
	if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1); err != nil {
		return fail(err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail(err)
		}
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fail(err)
		}
	} else {
		// The reader wakes up this often to see whether the socket was
		// closed (Close also shuts the socket down, which wakes it at once).
		// A receive timeout also makes a signal end a waiting recvmmsg
		// (EINTR, never restarted): the runtime relies on that to stop a
		// reader that waits in a raw system call (Config.OwnThread).
		tv := unix.Timeval{Usec: 500000}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fail(err)
		}
		// Now, not when served: the kernel notes a datagram's arrival
		// interface as it queues it, and a query may queue before Serve.
		if err := enablePktinfo(fd, family == unix.AF_INET6); err != nil {
			return fail(err)
		}
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		return fail(err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 128); err != nil {
			return fail(err)
		}
	}
	return fd, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// close wakes the reader and closes the socket once it is gone; done is
// closed by the reader when it returns.
func (u *udpSocket) close(done <-chan struct{}) error {
	if u.closed.Swap(true) {
		return nil
	}
	unix.Shutdown(u.fd, unix.SHUT_RDWR) // wakes a blocked recvmmsg (ENOTCONN on UDP, but it does)
	<-done
	return unix.Close(u.fd)
}

// sendTo sends one datagram to a peer given by its raw address (as the
// reader got it); errors are dropped, as UDP answers are best-effort.
func (u *udpSocket) sendTo(b []byte, peer rawAddr) {
	if u.closed.Load() {
		return
	}
	var h unix.Msghdr
	iov := unix.Iovec{Base: &b[0]}
	iov.SetLen(len(b))
	h.Iov, h.Iovlen = &iov, 1
	h.Name = (*byte)(unsafe.Pointer(&peer.b[0]))
	h.Namelen = peer.n
	unix.Syscall(unix.SYS_SENDMSG, uintptr(u.fd), uintptr(unsafe.Pointer(&h)), 0)
	runtime.KeepAlive(peer)
	runtime.KeepAlive(b)
}

// rawAddr is a peer's address as the kernel gave it (sockaddr_in or _in6).
type rawAddr struct {
	b [unix.SizeofSockaddrInet6]byte
	n uint32
}

// mmsghdr is struct mmsghdr: one message of recvmmsg/sendmmsg.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// udpBatch is a reader's buffers: n messages in, their answers out.
type udpBatch struct {
	in    []mmsghdr
	inIov []unix.Iovec
	bufs  [][]byte
	ctrl  [][]byte // each query's control messages (its arrival interface)
	peers []rawAddr
	out   []mmsghdr
	oIov  []unix.Iovec
	resp  [][]byte
}

func newUDPBatch(n, size int) *udpBatch {
	b := &udpBatch{in: make([]mmsghdr, n), inIov: make([]unix.Iovec, n), bufs: make([][]byte, n), ctrl: make([][]byte, n), peers: make([]rawAddr, n),
		out: make([]mmsghdr, n), oIov: make([]unix.Iovec, n), resp: make([][]byte, n)}
	for i := range n {
		b.bufs[i] = make([]byte, size)
		b.inIov[i].Base = &b.bufs[i][0]
		b.inIov[i].SetLen(size)
		b.in[i].hdr.Iov, b.in[i].hdr.Iovlen = &b.inIov[i], 1
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.peers[i].b[0]))
		b.ctrl[i] = make([]byte, 64)
		b.in[i].hdr.Control = &b.ctrl[i][0]
		b.out[i].hdr.Iov, b.out[i].hdr.Iovlen = &b.oIov[i], 1
		b.resp[i] = make([]byte, 0, 512)
	}
	return b
}

// recv blocks until at least one datagram is there and returns how many it
// got (0 on a timeout, a signal, or shutdown).
func (u *udpSocket) recv(b *udpBatch) (int, error) {
	// What is there already, without sleeping: a raw system call, as it
	// does not block (the runtime need not hand this thread's P on). Under
	// load there usually is something. (Looking again a few times, with
	// sched_yield in between, before sleeping saved context switches but
	// took CPU time from the processes that attach and detach sandboxes:
	// measured, fewer changes per second and a worse p99 under churn.)
	if n, err := u.recvNow(b); n > 0 || err != nil {
		return n, err
	}
	// Nothing came: sleep until something does. An own thread that is
	// busy sleeps without telling the runtime, which would otherwise hand
	// its P to another thread and wake the runtime's monitor on every
	// batch; a signal (the runtime preempting it, every 10ms at most) or
	// the receive timeout ends that sleep, and the next one is an ordinary
	// blocking call that gives the P up.
	msgs, vlen := b.prepare()
	var (
		n     uintptr
		errno syscall.Errno
	)
	if u.ownThread && u.hot {
		n, _, errno = syscall.RawSyscall6(unix.SYS_RECVMMSG, uintptr(u.fd), msgs, vlen, unix.MSG_WAITFORONE, 0, 0)
	} else {
		n, _, errno = syscall.Syscall6(unix.SYS_RECVMMSG, uintptr(u.fd), msgs, vlen, unix.MSG_WAITFORONE, 0, 0)
	}
	runtime.KeepAlive(b)
	u.hot = errno == 0
	return b.got(n, errno)
}

// recvNow returns what has queued, without waiting (0 when nothing has).
func (u *udpSocket) recvNow(b *udpBatch) (int, error) {
	msgs, vlen := b.prepare()
	n, _, errno := syscall.RawSyscall6(unix.SYS_RECVMMSG, uintptr(u.fd), msgs, vlen, unix.MSG_DONTWAIT, 0, 0)
	runtime.KeepAlive(b)
	return b.got(n, errno)
}

// prepare readies b's messages for a receive and returns them as
// recvmmsg's arguments.
func (b *udpBatch) prepare() (msgs, vlen uintptr) {
	for i := range b.in {
		b.in[i].hdr.Namelen = uint32(len(b.peers[i].b))
		b.in[i].hdr.SetControllen(len(b.ctrl[i]))
		b.in[i].hdr.Flags = 0
	}
	return uintptr(unsafe.Pointer(&b.in[0])), uintptr(len(b.in))
}

// got is a receive's outcome: n messages, or none on a timeout, a signal
// or nothing queued.
func (b *udpBatch) got(n uintptr, errno syscall.Errno) (int, error) {
	switch errno {
	case 0:
	case unix.EAGAIN, unix.EINTR:
		return 0, nil
	default:
		return 0, errno
	}
	for i := range int(n) {
		b.peers[i].n = b.in[i].hdr.Namelen
	}
	return int(n), nil
}

// wait sleeps until one of fds (u's own among them) is readable, a signal
// comes or half a second has passed (as recv's timeout), the way recv
// sleeps: on an own thread that is busy, without telling the runtime.
func (u *udpSocket) wait(fds []unix.PollFd) {
	ts := unix.Timespec{Nsec: 500e6}
	p, n, t := uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(unsafe.Pointer(&ts))
	var (
		r     uintptr
		errno syscall.Errno
	)
	if u.ownThread && u.hot {
		r, _, errno = syscall.RawSyscall6(unix.SYS_PPOLL, p, n, t, 0, 0, 0)
	} else {
		r, _, errno = syscall.Syscall6(unix.SYS_PPOLL, p, n, t, 0, 0, 0)
	}
	runtime.KeepAlive(fds)
	u.hot = errno == 0 && r > 0
}

// syscall6 is a system call that does not sleep for long (a send): raw on
// an own thread, so the runtime keeps its P where it is.
func (u *udpSocket) syscall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (uintptr, uintptr, syscall.Errno) {
	if u.ownThread {
		return syscall.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
	}
	return syscall.Syscall6(trap, a1, a2, a3, a4, a5, a6)
}

// send sends the first k answers prepared in b.out.
func (u *udpSocket) send(b *udpBatch, k int) {
	for sent := 0; sent < k; {
		n, _, errno := u.syscall6(unix.SYS_SENDMMSG, uintptr(u.fd), uintptr(unsafe.Pointer(&b.out[sent])), uintptr(k-sent), 0, 0, 0)
		if errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			// The first message failed (its peer is unreachable, say):
			// skip it, send the rest.
			sent++
			continue
		}
		sent += int(n)
	}
}

// control is the i-th received query's control messages.
func (b *udpBatch) control(i int) []byte { return b.ctrl[i][:b.in[i].hdr.Controllen] }

// addr is the peer's address.
func (a *rawAddr) addr() netip.Addr {
	switch a.n {
	case unix.SizeofSockaddrInet4:
		return netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(&a.b[0])).Addr)
	case unix.SizeofSockaddrInet6:
		return netip.AddrFrom16((*unix.RawSockaddrInet6)(unsafe.Pointer(&a.b[0])).Addr).Unmap()
	}
	return netip.Addr{}
}

// enablePktinfo has the kernel say on which interface each datagram
// arrived (IP_PKTINFO, IPV6_RECVPKTINFO), for the client policy.
func enablePktinfo(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
}

// reply puts answer resp to the i-th received query at position k of b.out.
func (b *udpBatch) reply(k, i int, resp []byte) { b.replyTo(k, resp, &b.peers[i]) }

// replyTo puts resp, to be sent to peer, at position k of b.out.
func (b *udpBatch) replyTo(k int, resp []byte, peer *rawAddr) {
	b.oIov[k].Base = &resp[0]
	b.oIov[k].SetLen(len(resp))
	b.out[k].hdr.Name = (*byte)(unsafe.Pointer(&peer.b[0]))
	b.out[k].hdr.Namelen = peer.n
}
