package dns

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The forwarder sends UDP clients' queries upstream without a goroutine or
// a socket per query, as dnsmasq does: each upstream server has a small
// pool of connected sockets (opened once, through Config.Dial, so from the
// namespace the caller chose), a query goes out on a random one of them
// under a fresh random ID, and the answer, matched by ID and question, goes
// to the client with the client's ID. The answers are read by the server's
// UDP loop itself, between its batches of queries (relay): one thread
// waits on the client socket and the upstream sockets at once, as
// dnsmasq's loop does, so an answer costs no wake-up of a thread of its own
// and no lock handed between threads, and a batch of answers goes to the
// clients in one system call. A sweep moves a query that got no answer in
// its share of ForwardTimeout to the next server, and answers SERVFAIL when
// none is left.

// fwdPool is how many sockets each upstream server gets: the source port
// is one of these (random ephemeral ports, fixed while the server runs),
// the ID random, so a forged answer must guess both. More sockets mean
// more reads for fewer answers each: measured when each socket had a
// reader thread of its own, 8 sockets answered about half the queries of
// 2, with 2.5 times the p99; 1 and 2 were alike.
const fwdPool = 2

// fwdSweep is how often unanswered queries are looked at.
const fwdSweep = 20 * time.Millisecond

type forwarder struct {
	cfg *Config
	udp *udpSocket // the server's: answers go out on it

	// out counts the queries not yet answered (upstream or SERVFAIL): while
	// there are some, the UDP loop waits on the upstream sockets too.
	out atomic.Int32
	// owned are the sockets of the pools whose descriptor is ours, read by
	// the UDP loop (copied on write); wake (an eventfd, or -1) tells a
	// waiting loop that one was added.
	owned atomic.Pointer[[]*upConn]
	wake  int

	mu      sync.Mutex
	conns   map[netip.AddrPort][]*upConn // lazily dialled pools
	pending map[fwdKey]*fwdQuery
	closed  bool
	wg      sync.WaitGroup
	stop    chan struct{}
	kick    chan struct{} // a query is pending: the sweep must run
}

type fwdKey struct {
	c  *upConn
	id uint16
}

// upConn is one connected socket to one upstream server: a socket of our
// own (fd), read by the server's UDP loop, or, when Dial's connections do
// not give their descriptor, the net.Conn itself, read by a goroutine.
type upConn struct {
	up netip.AddrPort
	c  net.Conn   // nil when fd is used
	fd int        // -1 when c is used
	u  *udpSocket // fd's reading side
}

// write sends one message upstream.
func (c *upConn) write(b []byte) error {
	if c.c != nil {
		_, err := c.c.Write(b)
		return err
	}
	_, err := unix.Write(c.fd, b)
	return err
}

// ownFD takes the descriptor of a connected UDP conn over: a duplicate
// made blocking (the UDP loop reads it without waiting, and a blocking
// write waits for room rather than fail), with a receive timeout; the conn
// is closed. It returns -1 when c does not give its descriptor.
func ownFD(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }) != nil || err != nil {
		return -1
	}
	c.Close()
	tv := unix.Timeval{Usec: 500000}
	if unix.SetNonblock(fd, false) != nil || unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}

// fwdQuery is a client's query on its way.
type fwdQuery struct {
	msg      []byte // the client's query, as it came (never written to)
	clientID uint16
	qEnd     int
	ups      []netip.AddrPort
	try      int
	deadline time.Time // of the whole query
	tryBy    time.Time // of this try
	peer     rawAddr   // the client
}

// newForwarder starts the forwarder of the server that serves u.
func newForwarder(cfg *Config, u *udpSocket) *forwarder {
	f := &forwarder{cfg: cfg, udp: u, conns: map[netip.AddrPort][]*upConn{}, pending: map[fwdKey]*fwdQuery{}, stop: make(chan struct{}),
		kick: make(chan struct{}, 1)}
	// Without an eventfd, a loop waiting on the upstream sockets sees a
	// socket added meanwhile when its wait times out (half a second).
	var err error
	if f.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		f.wake = -1
	}
	f.wg.Add(1)
	go f.sweep()
	return f
}

// forward sends msg (a client's query, which it keeps) upstream; the
// client, peer, gets the answer, or a SERVFAIL, exactly once.
func (f *forwarder) forward(msg []byte, peer rawAddr) {
	qEnd := questionEnd(msg)
	if qEnd < 0 {
		return
	}
	var ups []netip.AddrPort
	if f.cfg.Upstreams != nil {
		ups = f.cfg.Upstreams()
	}
	q := &fwdQuery{msg: msg, clientID: binary.BigEndian.Uint16(msg), qEnd: qEnd, ups: ups, peer: peer,
		deadline: time.Now().Add(f.cfg.ForwardTimeout)}
	f.out.Add(1)
	f.mu.Lock()
	c, wire := f.send(q)
	f.mu.Unlock()
	f.write(q, c, wire)
}

// send registers q's try on its next upstream server that has a socket and
// returns the socket and the message to write to it (outside mu), or fails
// q and returns nil; the caller holds mu.
func (f *forwarder) send(q *fwdQuery) (*upConn, []byte) {
	for ; q.try < len(q.ups) && !f.closed; q.try++ {
		c, err := f.conn(q.ups[q.try])
		if err != nil {
			f.cfg.Logger.Debug("dns forward: no socket", "upstream", q.ups[q.try], "err", err)
			continue
		}
		key := fwdKey{c: c}
		for {
			key.id = uint16(rand.Uint32())
			if f.pending[key] == nil {
				break
			}
		}
		wire := append([]byte(nil), q.msg...)
		binary.BigEndian.PutUint16(wire, key.id)
		// Split what is left of the budget between the servers not yet tried.
		left := time.Until(q.deadline)
		q.tryBy = time.Now().Add(left / time.Duration(len(q.ups)-q.try))
		f.pending[key] = q
		if len(f.pending) == 1 {
			select {
			case f.kick <- struct{}{}:
			default:
			}
		}
		return c, wire
	}
	f.fail(q)
	return nil, nil
}

// write sends q's registered try on c; a failed write moves q on at once.
// The caller does not hold mu: other queries and answers go on meanwhile.
func (f *forwarder) write(q *fwdQuery, c *upConn, wire []byte) {
	for c != nil {
		err := c.write(wire)
		if err == nil {
			return
		}
		f.cfg.Logger.Debug("dns forward", "upstream", c.up, "err", err)
		f.mu.Lock()
		key := fwdKey{c: c, id: binary.BigEndian.Uint16(wire)}
		c = nil
		if f.pending[key] == q { // not answered or swept meanwhile
			delete(f.pending, key)
			q.try++
			c, wire = f.send(q)
		}
		f.mu.Unlock()
	}
}

// fail answers SERVFAIL; the caller holds mu.
func (f *forwarder) fail(q *fwdQuery) {
	if len(q.ups) > 0 {
		f.cfg.Logger.Debug("dns forward failed", "tries", q.try)
	}
	f.udp.sendTo(servfail(nil, q.msg, q.qEnd), q.peer)
	f.out.Add(-1)
}

// conn returns a socket of up's pool, dialling it on first use; the caller
// holds mu.
func (f *forwarder) conn(up netip.AddrPort) (*upConn, error) {
	pool := f.conns[up]
	k := rand.IntN(fwdPool)
	if k < len(pool) {
		return pool[k], nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.ForwardTimeout)
	defer cancel()
	c, err := f.cfg.Dial(ctx, "udp", up.String())
	if err != nil {
		if len(pool) > 0 {
			return pool[k%len(pool)], nil
		}
		return nil, err
	}
	uc := &upConn{up: up, c: c, fd: ownFD(c)}
	if uc.fd >= 0 {
		uc.c, uc.u = nil, &udpSocket{fd: uc.fd}
		var owned []*upConn
		if p := f.owned.Load(); p != nil {
			owned = *p
		}
		owned = append(owned[:len(owned):len(owned)], uc)
		f.owned.Store(&owned)
		if f.wake >= 0 {
			unix.Write(f.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		}
	} else {
		f.wg.Add(1)
		go f.read(uc)
	}
	f.conns[up] = append(pool, uc)
	return uc, nil
}

// read takes the answers of one socket until it is closed.
func (f *forwarder) read(c *upConn) {
	defer f.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, err := c.c.Read(buf)
		if err != nil {
			if f.isClosed() {
				return
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			// ECONNREFUSED from an ICMP error and the like: keep reading;
			// the query's try times out and moves on.
			time.Sleep(time.Millisecond)
			continue
		}
		f.deliver(c, buf[:n])
	}
}

// waiting reports whether queries are out upstream: then the UDP loop
// reads the upstream sockets (relay) and waits on them too (wait).
func (f *forwarder) waiting() bool { return f.out.Load() > 0 }

// relay reads the answers that came on the owned upstream sockets and sends
// them on to their clients, a batch per system call each way, with b as
// the buffers. The UDP loop calls it: nothing else reads those sockets.
func (f *forwarder) relay(b *udpBatch) {
	owned := f.owned.Load()
	if owned == nil {
		return
	}
	for _, c := range *owned {
		// An error (ECONNREFUSED from an ICMP error and the like) is let
		// be: the query's try times out and moves on.
		n, _ := c.u.recvNow(b)
		if n == 0 {
			continue
		}
		k := 0
		f.mu.Lock()
		for i := range n {
			resp := b.bufs[i][:b.in[i].len]
			if q := f.take(c, resp); q != nil {
				binary.BigEndian.PutUint16(resp, q.clientID)
				b.replyTo(k, resp, &q.peer)
				k++
			}
		}
		f.mu.Unlock()
		f.out.Add(int32(-k))
		f.udp.send(b, k)
	}
}

// wait sleeps until a query comes on u, an answer on an owned upstream
// socket, a socket is added, or half a second has passed; fds is its
// buffer. The UDP loop calls it, when neither has anything queued.
func (f *forwarder) wait(u *udpSocket, fds *[]unix.PollFd) {
	set := append((*fds)[:0], unix.PollFd{Fd: int32(u.fd), Events: unix.POLLIN})
	if f.wake >= 0 {
		set = append(set, unix.PollFd{Fd: int32(f.wake), Events: unix.POLLIN})
	}
	if owned := f.owned.Load(); owned != nil {
		for _, c := range *owned {
			set = append(set, unix.PollFd{Fd: int32(c.fd), Events: unix.POLLIN})
		}
	}
	*fds = set
	u.wait(set)
	if f.wake >= 0 && set[1].Revents != 0 {
		var b [8]byte
		unix.Read(f.wake, b[:])
	}
}

// deliver hands an answer read by a goroutine (a socket that is not ours)
// to the query it answers, if any.
func (f *forwarder) deliver(c *upConn, resp []byte) {
	f.mu.Lock()
	q := f.take(c, resp)
	f.mu.Unlock()
	if q == nil {
		return
	}
	out := make([]byte, len(resp))
	copy(out, resp)
	binary.BigEndian.PutUint16(out, q.clientID)
	f.udp.sendTo(out, q.peer)
	f.out.Add(-1)
}

// take returns the query that resp, an answer that came on c, answers and
// forgets it, or nil (late, or not an answer to what was asked); the
// caller holds mu.
func (f *forwarder) take(c *upConn, resp []byte) *fwdQuery {
	if len(resp) < 12 || resp[2]&0x80 == 0 {
		return nil
	}
	key := fwdKey{c: c, id: binary.BigEndian.Uint16(resp)}
	q := f.pending[key]
	if q == nil || questionEnd(resp) != q.qEnd || !sameQuestion(resp[12:q.qEnd], q.msg[12:q.qEnd]) {
		return nil
	}
	delete(f.pending, key)
	return q
}

// sweep moves queries whose try timed out on to the next server.
func (f *forwarder) sweep() {
	defer f.wg.Done()
	// The ticker runs only while queries are pending, so an idle server
	// sleeps.
	t := time.NewTicker(fwdSweep)
	defer t.Stop()
	ticking := true
	type retryWrite struct {
		q    *fwdQuery
		c    *upConn
		wire []byte
	}
	var retry []retryWrite
	for {
		if !ticking {
			select {
			case <-f.stop:
				return
			case <-f.kick:
			}
			t.Reset(fwdSweep)
			ticking = true
		}
		select {
		case <-f.stop:
			return
		case <-f.kick:
		case now := <-t.C:
			f.mu.Lock()
			for key, q := range f.pending {
				if now.Before(q.tryBy) {
					continue
				}
				delete(f.pending, key)
				q.try++
				if now.Before(q.deadline) {
					if c, wire := f.send(q); c != nil {
						retry = append(retry, retryWrite{q, c, wire})
					}
				} else {
					f.fail(q)
				}
			}
			if len(f.pending) == 0 {
				t.Stop()
				ticking = false
			}
			f.mu.Unlock()
			for _, r := range retry {
				f.write(r.q, r.c, r.wire)
			}
			retry = retry[:0]
		}
	}
}

func (f *forwarder) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// close closes the sockets and answers SERVFAIL to what is pending.
func (f *forwarder) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	for _, pool := range f.conns {
		for _, c := range pool {
			if c.c != nil {
				c.c.Close() // ends its reader
			}
		}
	}
	for key, q := range f.pending {
		delete(f.pending, key)
		f.fail(q)
	}
	f.mu.Unlock()
	close(f.stop)
	f.wg.Wait()
	// The UDP loop, which reads the owned sockets, has returned (see
	// Server.Close).
	for _, pool := range f.conns {
		for _, c := range pool {
			if c.c == nil {
				unix.Close(c.fd)
			}
		}
	}
	if f.wake >= 0 {
		unix.Close(f.wake)
	}
}
