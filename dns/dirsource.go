package dns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DirSource is a Source over a directory holding one record per file (a
// state dir's endpoint records). It follows the directory with inotify: a
// change re-reads only the files it names, builds the new Table beside the
// current one from the old one and the changed records only (its cost does
// not grow with the directory) and swaps it in, so a query never waits for
// a reload of the whole directory and never sees a half-built table.
//
// Reads are consistent with writes: a query that arrives after a file was
// renamed into (or removed from) the directory is answered from a table
// that has the change. A goroutine applies changes as their events come,
// so a query usually finds them applied; Table still asks the kernel (one
// ioctl) whether changes are queued and, if so, applies them itself before
// answering.
//
// DirSource is safe for concurrent use; Close releases the watch.
type DirSource struct {
	dir    string
	match  func(name string) bool // nil: every name
	decode func(name string, data []byte) (Record, bool)

	f         *os.File // the inotify instance (non-blocking)
	fd        int
	closed    atomic.Bool // set under mu, before f is closed
	mu        sync.Mutex  // held while changes are applied
	applying  atomic.Int32
	idx       *tableIndex     // the records by file name, and the table they make; guarded by mu
	changed   map[string]bool // files named by events not applied yet; guarded by mu
	rescanDue bool            // an overflow or the directory's going: read it all; guarded by mu
	unwatched bool            // the directory went, and its watch with it; guarded by mu
	buf       []byte          // event buffer; guarded by mu
	stale     atomic.Bool     // changed or rescanDue is set
	cur       atomic.Pointer[Table]
	done      chan struct{}
	errMu     sync.Mutex
	lastErr   error
}

// dirEvents are the changes a DirSource follows: a file created (a hard
// link made to a complete file counts), written in place or renamed in (an
// atomic write), removed or renamed away, and the directory itself going.
// A file created empty and written after is read again when it is closed.
const dirEvents = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// WatchDir starts following dir, which must exist: decode turns a file's
// name and contents into a Record, or reports false for files that are not
// records (temporary files, other kinds). The first Table is built from
// the files there now.
//
// Equivalent to: inotifywait -m -e close_write,moved_to,moved_from,delete DIR,
// re-reading each file named.
func WatchDir(dir string, decode func(name string, data []byte) (Record, bool)) (*DirSource, error) {
	return WatchDirMatching(dir, nil, decode)
}

// WatchDirMatching is WatchDir for the files whose names match accepts
// (nil: all): changes to the others, such as the temporary files that an
// atomic write renames into place, are not read and cost no table.
func WatchDirMatching(dir string, match func(name string) bool, decode func(name string, data []byte) (Record, bool)) (*DirSource, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	// The watch comes first, then the scan: a change in between is both in
	// the scan and queued, and applying it twice is harmless.
	if _, err := unix.InotifyAddWatch(fd, dir, dirEvents); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	d := &DirSource{dir: dir, match: match, decode: decode, fd: fd, f: os.NewFile(uintptr(fd), "inotify:"+dir),
		idx: newTableIndex(), changed: map[string]bool{}, buf: make([]byte, 64<<10), done: make(chan struct{})}
	d.mu.Lock()
	d.rescan()
	d.mu.Unlock()
	go d.follow()
	return d, nil
}

// Table returns the current table, after applying the changes the kernel
// has queued, if any: the files they name are read and the new table is
// built now, once for all the changes since the last query (a directory
// that changes while nobody asks costs nothing but the draining of its
// events).
func (d *DirSource) Table() *Table {
	// Order matters: a drainer marks itself before it reads the queue and
	// marks the table stale before it unmarks itself, so a reader that finds
	// the queue empty, nobody draining and the table fresh knows that every
	// change queued before its call is in cur.
	if d.closed.Load() || d.queued() == 0 && d.applying.Load() == 0 && !d.stale.Load() {
		return d.cur.Load()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drain()
	if d.stale.Load() && !d.closed.Load() {
		d.update()
	}
	return d.cur.Load()
}

// Err is the last error met reading the directory (nil if none); the table
// keeps what could be read.
func (d *DirSource) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.lastErr
}

// Close stops following the directory; Table keeps returning the last
// table. Idempotent.
func (d *DirSource) Close() error {
	d.mu.Lock()
	if d.closed.Load() {
		d.mu.Unlock()
		return nil
	}
	d.closed.Store(true)
	err := d.f.Close() // wakes follow
	d.mu.Unlock()
	<-d.done
	return err
}

// queued is how many bytes of events wait in the inotify queue.
func (d *DirSource) queued() int {
	var n int32
	// A raw system call: it never sleeps, and it runs on the serving
	// thread for every batch of queries (see udpSocket).
	_, _, errno := syscall.RawSyscall(unix.SYS_IOCTL, uintptr(d.fd), unix.TIOCINQ, uintptr(unsafe.Pointer(&n))) // FIONREAD
	if errno != 0 {
		return 0 // closed: nothing more will come
	}
	return int(n)
}

// follow drains the kernel's queue as events come, until Close, so it
// never overflows while nobody asks.
func (d *DirSource) follow() {
	defer close(d.done)
	rc, err := d.f.SyscallConn()
	if err != nil {
		return
	}
	for {
		// Wait (in the runtime's poller) until events are queued, without
		// reading them: drain reads them under mu.
		err := rc.Read(func(uintptr) bool { return d.queued() > 0 })
		if err != nil {
			return // closed
		}
		// Apply what came now, so the next query finds the table ready
		// (it would otherwise apply it itself, as it must not miss it).
		d.mu.Lock()
		closed := d.closed.Load()
		d.drain()
		if d.stale.Load() && !closed {
			d.update()
		}
		d.mu.Unlock()
		if closed {
			return
		}
	}
}

// drain reads the queued events into the set of changed files and marks
// the table stale; the caller holds mu.
func (d *DirSource) drain() {
	d.applying.Add(1)
	defer d.applying.Add(-1)
	if d.closed.Load() {
		return
	}
	for {
		n, err := unix.Read(d.fd, d.buf)
		if n <= 0 || err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&d.buf[off]))
			name := ""
			if ev.Len > 0 {
				b := d.buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				name = string(b[:clen(b)])
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
			switch {
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				d.rescanDue = true
			case ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0:
				// The directory went: the rescan finds nothing, and the
				// watch is gone with it; update watches the directory
				// again once it is back.
				d.rescanDue, d.unwatched = true, true
			case name != "":
				if d.match != nil && !d.match(name) {
					continue
				}
				d.changed[name] = true
			default:
				continue
			}
			d.stale.Store(true)
		}
	}
}

// update reads the changed files (or all, after an overflow) and
// publishes the new table; the caller holds mu.
func (d *DirSource) update() {
	if d.unwatched {
		// Made again (a network removed and made again): watch it, then
		// read it all. Until then every Table comes here (one syscall).
		if _, err := unix.InotifyAddWatch(d.fd, d.dir, dirEvents); err != nil {
			if d.rescanDue {
				d.rescan() // empty now
				d.rescanDue = false
			}
			return // stays stale
		}
		d.unwatched, d.rescanDue = false, true
	}
	if d.rescanDue {
		d.rescan()
	} else {
		var changes []change
		for name := range d.changed {
			if c, ok := d.readOne(name); ok {
				changes = append(changes, c)
			}
		}
		if len(changes) > 0 {
			d.cur.Store(d.idx.apply(changes))
		}
	}
	clear(d.changed)
	d.rescanDue = false
	d.stale.Store(false)
}

// readOne re-reads one file and returns the change it makes to the
// records (the record set, or dropped when gone or not a record), if any.
func (d *DirSource) readOne(name string) (change, bool) {
	old, had := d.idx.get(name)
	b, err := os.ReadFile(filepath.Join(d.dir, name))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.setErr(err)
		}
		return change{key: name}, had
	}
	r, ok := d.decode(name, b)
	if !ok {
		return change{key: name}, had
	}
	return change{key: name, rec: r, ok: true}, !had || !sameRecord(old, r)
}

func sameRecord(a, b Record) bool {
	return slices.Equal(a.Names, b.Names) && slices.Equal(a.Addrs, b.Addrs)
}

// rescan reads every file again into a new index; the caller holds mu.
func (d *DirSource) rescan() {
	entries, err := os.ReadDir(d.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.setErr(err)
	}
	d.idx = newTableIndex()
	var changes []change
	for _, e := range entries {
		if e.Type().IsRegular() && (d.match == nil || d.match(e.Name())) {
			if c, ok := d.readOne(e.Name()); ok {
				changes = append(changes, c)
			}
		}
	}
	d.cur.Store(d.idx.apply(changes))
}

func (d *DirSource) setErr(err error) {
	d.errMu.Lock()
	d.lastErr = err
	d.errMu.Unlock()
}

// clen is the length of a NUL-padded name.
func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}
