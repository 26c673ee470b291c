package dns

import (
	"net/netip"
	"strings"
)

// Record is one sandbox as the name server sees it: its names (hostname,
// aliases) and addresses.
type Record struct {
	Names []string
	Addrs []netip.Addr
}

// Table is an immutable index of records by name and by address. Names are
// matched case-insensitively, with or without a trailing dot.
type Table struct {
	byName map[string][]netip.Addr
	byAddr map[netip.Addr][]string
}

// NewTable indexes recs. A name given by several records gets all their
// addresses.
func NewTable(recs []Record) *Table {
	t := &Table{byName: map[string][]netip.Addr{}, byAddr: map[netip.Addr][]string{}}
	for _, r := range recs {
		for _, n := range r.Names {
			key := canonical(n)
			if key == "" {
				continue
			}
			for _, a := range r.Addrs {
				a = a.Unmap()
				t.byName[key] = appendNew(t.byName[key], a)
				t.byAddr[a] = appendNew(t.byAddr[a], key)
			}
			if _, ok := t.byName[key]; !ok {
				t.byName[key] = nil // known name, no address yet
			}
		}
	}
	return t
}

// Lookup returns the addresses of name and whether the name is known.
func (t *Table) Lookup(name string) ([]netip.Addr, bool) {
	if t == nil {
		return nil, false
	}
	a, ok := t.byName[canonical(name)]
	return a, ok
}

// lookupBytes is Lookup of a name already in key form (lower case, no
// trailing dot), without allocating.
func (t *Table) lookupBytes(key []byte) ([]netip.Addr, bool) {
	if t == nil {
		return nil, false
	}
	a, ok := t.byName[string(key)]
	return a, ok
}

// Names returns the names of addr.
func (t *Table) Names(addr netip.Addr) []string {
	if t == nil {
		return nil
	}
	return t.byAddr[addr.Unmap()]
}

// Len is the number of names.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byName)
}

// canonical lower-cases name and drops a trailing dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// Source gives the server the current table; it is called for every query,
// so it must be cheap when nothing changed. A Source may reload behind it.
type Source interface {
	Table() *Table
}

// Static is a Source that never changes.
type Static struct{ T *Table }

// Table returns s.T.
func (s Static) Table() *Table { return s.T }
