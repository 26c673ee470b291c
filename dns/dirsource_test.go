package dns

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// decodeLine reads test records: "NAME ADDR" in files ending in .rec.
func decodeLine(name string, data []byte) (Record, bool) {
	if !strings.HasSuffix(name, ".rec") {
		return Record{}, false
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return Record{}, false
	}
	a, err := netip.ParseAddr(f[1])
	if err != nil {
		return Record{}, false
	}
	return Record{Names: []string{f[0]}, Addrs: []netip.Addr{a}}, true
}

// writeAtomic writes as the state dir does: a temporary file renamed over.
func writeAtomic(t testing.TB, dir, name, data string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func lookup(src Source, name string) string {
	a, ok := src.Table().Lookup(name)
	if !ok {
		return "unknown"
	}
	return fmt.Sprint(a)
}

// TestDirSource checks that every change to the directory is in the very
// next Table: a name is answered right after its file is written, and not
// after it is removed, with no wait in between.
func TestDirSource(t *testing.T) {
	dir := t.TempDir()
	writeAtomic(t, dir, "a.rec", "web 10.0.0.2")
	os.WriteFile(filepath.Join(dir, "junk"), []byte("x 10.0.0.9"), 0o644)
	src, err := WatchDir(dir, decodeLine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if got := lookup(src, "web"); got != "[10.0.0.2]" {
		t.Fatalf("existing record: %s", got)
	}
	if got := lookup(src, "x"); got != "unknown" {
		t.Fatalf("a file decode rejects is a record: %s", got)
	}
	for i := range 300 {
		name := fmt.Sprintf("sbx%d", i)
		writeAtomic(t, dir, name+".rec", fmt.Sprintf("%s 10.0.%d.%d", name, i/250, 2+i%250))
		if got := lookup(src, name); got == "unknown" {
			t.Fatalf("%s unknown right after its record was written", name)
		}
		if i%3 == 0 {
			if err := os.Remove(filepath.Join(dir, name+".rec")); err != nil {
				t.Fatal(err)
			}
			if got := lookup(src, name); got != "unknown" {
				t.Fatalf("%s still answered (%s) right after its record was removed", name, got)
			}
		}
	}
	// Created by a hard link to a complete file, as a record claimed with
	// an exclusive create is.
	tmp := filepath.Join(dir, ".link.tmp")
	os.WriteFile(tmp, []byte("linked 10.0.0.5"), 0o644)
	if err := os.Link(tmp, filepath.Join(dir, "l.rec")); err != nil {
		t.Fatal(err)
	}
	os.Remove(tmp)
	if got := lookup(src, "linked"); got != "[10.0.0.5]" {
		t.Fatalf("record made by link: %s", got)
	}
	os.Remove(filepath.Join(dir, "l.rec"))
	writeAtomic(t, dir, "a.rec", "web 10.0.0.3") // replaced in place
	if got := lookup(src, "web"); got != "[10.0.0.3]" {
		t.Fatalf("replaced record: %s", got)
	}
	// Written in place (no rename): seen once the file is closed.
	if err := os.WriteFile(filepath.Join(dir, "b.rec"), []byte("db 10.0.0.4"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := lookup(src, "db"); got != "[10.0.0.4]" {
		t.Fatalf("record written in place: %s", got)
	}
	if n := src.Table().Len(); n != 1+200+1 {
		t.Fatalf("%d names, want %d", n, 202)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := lookup(src, "db"); got != "[10.0.0.4]" {
		t.Fatalf("after Close the last table stays: %s", got)
	}
}

// TestDirSourceConcurrent writes and removes records while readers look up
// a name that never changes: it is always answered, and the readers see
// every writer's change in order (run with -race).
func TestDirSourceConcurrent(t *testing.T) {
	dir := t.TempDir()
	writeAtomic(t, dir, "stable.rec", "stable 10.0.0.2")
	src, err := WatchDir(dir, decodeLine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if got := lookup(src, "stable"); got != "[10.0.0.2]" {
					errs <- got
					return
				}
			}
		}()
	}
	for i := range 200 {
		name := fmt.Sprintf("c%d", i%10)
		writeAtomic(t, dir, name+".rec", fmt.Sprintf("%s 10.1.0.%d", name, i%250))
		if got := lookup(src, name); got != fmt.Sprintf("[10.1.0.%d]", i%250) {
			t.Errorf("write %d: %s = %s", i, name, got)
		}
		if i%2 == 1 {
			os.Remove(filepath.Join(dir, name+".rec"))
		}
	}
	close(stop)
	wg.Wait()
	select {
	case got := <-errs:
		t.Fatalf("the unchanged name was answered %s during changes", got)
	default:
	}
}

func TestWatchDirMissing(t *testing.T) {
	if _, err := WatchDir(filepath.Join(t.TempDir(), "nosuch"), decodeLine); err == nil {
		t.Fatal("watching a missing directory worked")
	}
}

// TestDirSourceDirectoryRemade: the directory is removed (its names go)
// and made again (a network removed and made again under a running
// server): its files are followed again.
func TestDirSourceDirectoryRemade(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	os.Mkdir(dir, 0o755)
	writeAtomic(t, dir, "a.rec", "web 10.0.0.2")
	src, err := WatchDir(dir, decodeLine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if got := lookup(src, "web"); got != "[10.0.0.2]" {
		t.Fatalf("before: %s", got)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if got := lookup(src, "web"); got != "unknown" {
		t.Fatalf("directory removed, name still answered: %s", got)
	}
	os.Mkdir(dir, 0o755)
	writeAtomic(t, dir, "b.rec", "db 10.0.0.3")
	if got := lookup(src, "db"); got != "[10.0.0.3]" {
		t.Fatalf("directory made again: %s", got)
	}
	writeAtomic(t, dir, "c.rec", "app 10.0.0.4")
	if got := lookup(src, "app"); got != "[10.0.0.4]" {
		t.Fatalf("a file written after the directory came back: %s", got)
	}
}

// TestWatchDirMatching: files whose names do not match are never read
// (decode never sees them), in the first scan or after; the ones that
// match are followed as with WatchDir.
func TestWatchDirMatching(t *testing.T) {
	dir := t.TempDir()
	writeAtomic(t, dir, "a.rec", "web 10.0.0.2")
	os.WriteFile(filepath.Join(dir, ".b.rec.tmp"), []byte("db 10.0.0.3"), 0o644)
	var mu sync.Mutex
	var read []string
	src, err := WatchDirMatching(dir, func(name string) bool { return strings.HasSuffix(name, ".rec") },
		func(name string, data []byte) (Record, bool) {
			mu.Lock()
			read = append(read, name)
			mu.Unlock()
			return decodeLine(name, data)
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	writeAtomic(t, dir, "c.rec", "cache 10.0.0.4") // its temporary file is .c.rec.tmp
	if got := lookup(src, "web"); got != "[10.0.0.2]" {
		t.Errorf("web = %s", got)
	}
	if got := lookup(src, "cache"); got != "[10.0.0.4]" {
		t.Errorf("cache = %s", got)
	}
	if got := lookup(src, "db"); got != "unknown" {
		t.Errorf("db (a temporary file) = %s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, name := range read {
		if !strings.HasSuffix(name, ".rec") {
			t.Errorf("read %s, which does not match", name)
		}
	}
}
