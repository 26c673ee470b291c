package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

// plant writes an address file as a crashed Allocate or Release leaves it.
func plant(t *testing.T, s *Store, k Key, a string) {
	t.Helper()
	b, err := json.Marshal(addrRecord{Key: k, Created: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.netDir(k.Network)
	if err := os.MkdirAll(filepath.Join(dir, keysDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(addrPath(dir, addr(a)), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOrphanFromCrashedAllocate(t *testing.T) {
	s := newStore(t)
	plant(t, s, key("ghost"), "10.88.0.2") // address file written, key file never
	if _, err := s.Get(key("ghost")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a half-made lease: %v, want ErrNotFound", err)
	}
	if leases, err := s.List("n1"); err != nil || len(leases) != 0 {
		t.Errorf("List = %v, %v; want no lease", leases, err)
	}
	if l := mustAllocate(t, s, []Pool{v4Pool()}, key("a")); l.Addrs[0] != pfx("10.88.0.2/24") {
		t.Errorf("got %v, want the orphan 10.88.0.2/24 reclaimed", l.Addrs)
	}
	// The ghost itself can allocate again, and gets a whole new lease.
	if l := mustAllocate(t, s, []Pool{v4Pool()}, key("ghost")); l.Addrs[0] != pfx("10.88.0.3/24") {
		t.Errorf("got %v, want 10.88.0.3/24", l.Addrs)
	}
}

func TestOrphanFromCrashedRelease(t *testing.T) {
	s := newStore(t)
	pools := []Pool{v4Pool()}
	a := mustAllocate(t, s, pools, key("a"))
	// Release removed the key file, then died.
	if err := os.Remove(keyPath(s.netDir("n1"), key("a"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(key("a")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get: %v, want ErrNotFound", err)
	}
	if err := s.Release(context.Background(), key("a")); err != nil {
		t.Errorf("Release of a half-released lease: %v", err)
	}
	if l := mustAllocate(t, s, pools, key("b"), a.Addrs[0].Addr()); l.Addrs[0] != a.Addrs[0] {
		t.Errorf("static on the orphan: got %v, want %v", l.Addrs, a.Addrs)
	}
}

func TestBrokenKeyFile(t *testing.T) {
	s := newStore(t)
	pools := []Pool{v4Pool()}
	mustAllocate(t, s, pools, key("a"))
	// Someone removed the address file under the lease.
	if err := os.Remove(addrPath(s.netDir("n1"), addr("10.88.0.2"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(key("a")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a broken lease: %v, want ErrNotFound", err)
	}
	if l := mustAllocate(t, s, pools, key("a")); l.Addrs[0] != pfx("10.88.0.3/24") {
		t.Errorf("Allocate over a broken lease: got %v, want 10.88.0.3/24", l.Addrs)
	}
}

func TestSymlinksAreNotFollowed(t *testing.T) {
	s := newStore(t)
	pools := []Pool{v4Pool()}
	a := mustAllocate(t, s, pools, key("a"))
	dir := s.netDir("n1")
	// A key file that is a symlink to a perfectly good copy is no lease.
	kp := keyPath(dir, key("a"))
	outside := filepath.Join(t.TempDir(), "copy")
	b, err := os.ReadFile(kp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outside, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(kp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, kp); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(key("a")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get through a symlinked key file: %v, want ErrNotFound", err)
	}
	// An address file that is a symlink is junk: reclaimed by replacing the
	// link, and the file it points to is left alone.
	if err := os.Symlink(outside, addrPath(dir, addr("10.88.0.7"))); err != nil {
		t.Fatal(err)
	}
	if l := mustAllocate(t, s, pools, key("b"), addr("10.88.0.7")); l.Addrs[0] != pfx("10.88.0.7/24") {
		t.Errorf("got %v", l.Addrs)
	}
	if after, err := os.ReadFile(outside); err != nil || !reflect.DeepEqual(after, b) {
		t.Errorf("the symlink's target changed: %q, %v", after, err)
	}
	if err := s.GC(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(kp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("GC left the symlinked key file: %v", err)
	}
	if _, err := os.Lstat(addrPath(dir, a.Addrs[0].Addr())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("GC left the address file of the broken lease: %v", err)
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	pools := []Pool{v4Pool(), {Subnet: pfx("fd00::/64")}}
	for _, sb := range []string{"a", "b", "c"} {
		mustAllocate(t, s, pools, key(sb))
	}
	before, err := s.List("n1")
	if err != nil {
		t.Fatal(err)
	}
	dir := s.netDir("n1")
	plant(t, s, key("ghost"), "10.88.0.100")
	plant(t, s, key("ghost"), "fd00::100")
	for _, junk := range []string{".tmp-123", filepath.Join(keysDir, ".tmp-456")} {
		if err := os.WriteFile(filepath.Join(dir, junk), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, keysDir, key("bad").fileName()), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.GC(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	after, err := s.List("n1")
	if err != nil || !reflect.DeepEqual(before, after) {
		t.Errorf("GC changed the leases:\n%v\n%v (%v)", before, after, err)
	}
	var names []string
	for _, sub := range []string{".", keysDir} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			names = append(names, filepath.Join(sub, e.Name()))
		}
	}
	want := []string{
		"10.88.0.2", "10.88.0.3", "10.88.0.4",
		"fd00::1", "fd00::2", "fd00::3",
		"keys", "last_reserved_ipv4", "last_reserved_ipv6", "lock",
	}
	for _, sb := range []string{"a", "b", "c"} {
		want = append(want, filepath.Join(keysDir, key(sb).fileName()))
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("after GC:\n%v\nwant (in some order)\n%v", names, want)
	}
	if err := s.GC(ctx, "unknown"); err != nil {
		t.Errorf("GC of an unknown network: %v", err)
	}
}
