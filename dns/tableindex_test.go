package dns

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestTableIndex checks that a table built change by change answers as one
// built from scratch from the same records (NewTable), names shared by
// several records and records without names or addresses included, and
// that an older table is left as it was.
func TestTableIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := newTableIndex()
	recs := map[string]Record{}
	names := []string{"web", "WWW", "db", "db.", "cache", "api", "", "x"}
	addrsOf := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 88, 0, byte(2 + i)}) }
	randRec := func() Record {
		var r Record
		for range rng.IntN(3) {
			r.Names = append(r.Names, names[rng.IntN(len(names))])
		}
		for range rng.IntN(3) {
			a := addrsOf(rng.IntN(6))
			if rng.IntN(4) == 0 {
				a = netip.AddrFrom16(a.As16()) // v4-mapped: unmapped in the table
			}
			r.Addrs = append(r.Addrs, a)
		}
		return r
	}
	var prev *Table
	var prevWant *Table
	for step := range 500 {
		var cs []change
		for range 1 + rng.IntN(3) {
			key := fmt.Sprintf("f%d", rng.IntN(8))
			if rng.IntN(3) == 0 {
				delete(recs, key)
				cs = append(cs, change{key: key})
			} else {
				r := randRec()
				recs[key] = r
				cs = append(cs, change{key: key, rec: r, ok: true})
			}
		}
		got := x.apply(cs)
		var all []Record
		for _, r := range recs {
			all = append(all, r)
		}
		want := NewTable(all)
		if err := sameTable(got, want); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if prev != nil {
			if err := sameTable(prev, prevWant); err != nil {
				t.Fatalf("step %d: the previous table changed: %v", step, err)
			}
		}
		prev, prevWant = got, want
	}
}

// sameTable compares two tables as sets (the order of addresses and names
// follows the order records are given in).
func sameTable(a, b *Table) error {
	if a.Len() != b.Len() || len(a.byAddr) != len(b.byAddr) {
		return fmt.Errorf("sizes: %d names %d addresses, want %d and %d", a.Len(), len(a.byAddr), b.Len(), len(b.byAddr))
	}
	for k, want := range b.byName {
		got, ok := a.byName[k]
		if !ok || !sameSet(got, want) {
			return fmt.Errorf("name %q: %v (%v), want %v", k, got, ok, want)
		}
	}
	for ad, want := range b.byAddr {
		if got := a.byAddr[ad]; !sameSet(got, want) {
			return fmt.Errorf("address %s: %v, want %v", ad, got, want)
		}
	}
	return nil
}

func sameSet[T interface{ comparable }](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
}

// BenchmarkTableChange is one change (a sandbox attached, another
// detached) to a table of a thousand records.
func BenchmarkTableChange(b *testing.B) {
	x := newTableIndex()
	var cs []change
	for i := range 1000 {
		cs = append(cs, change{key: fmt.Sprint(i), ok: true, rec: Record{Names: []string{fmt.Sprintf("sbx%d", i)},
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 78, byte(i >> 8), byte(i)})}}})
	}
	x.apply(cs)
	on := change{key: "churn", ok: true, rec: Record{Names: []string{"churn"}, Addrs: []netip.Addr{netip.MustParseAddr("10.78.9.9")}}}
	off := change{key: "churn"}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			x.apply([]change{on})
		} else {
			x.apply([]change{off})
		}
	}
}
