package dnsrun

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sandnet/sandnet/dns"
)

// DirSource is a network's names read by load from the records in dir (the
// state dir's endpoint records: the source of truth, shared by every
// process), loaded again only when dir changes: Table costs one stat(2)
// when nothing changed.
func DirSource(dir string, load func() []dns.Record) dns.Source {
	return &dirSource{dir: dir, load: load}
}

type dirSource struct {
	dir  string
	load func() []dns.Record
	mu   sync.Mutex
	snap atomic.Pointer[sourceSnap]
}

type sourceSnap struct {
	t      *dns.Table
	mtime  time.Time
	loaded time.Time
}

// mtimeSlack covers the coarse clock behind directory mtimes (one tick):
// a change within it of the last reload might not move the mtime, so the
// table is reloaded until the mtime is that much older than the reload.
const mtimeSlack = 50 * time.Millisecond

func (s *dirSource) Table() *dns.Table {
	fi, err := os.Stat(s.dir)
	if err != nil {
		return dns.NewTable(nil)
	}
	mt := fi.ModTime()
	if c := s.snap.Load(); c != nil && c.mtime.Equal(mt) && c.loaded.Sub(mt) > mtimeSlack {
		return c.t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.snap.Load(); c != nil && c.mtime.Equal(mt) && c.loaded.Sub(mt) > mtimeSlack {
		return c.t
	}
	now := time.Now()
	t := dns.NewTable(s.load())
	s.snap.Store(&sourceSnap{t: t, mtime: mt, loaded: now})
	return t
}
