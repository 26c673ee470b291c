package sandboxfiles

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sandnet/sandnet/internal/state"
)

func TestForNamespace(t *testing.T) {
	r, h := ForNamespace("sb1", []byte("r"), []byte("h"), "/rootfs/etc/resolv.conf", "")
	if want := []string{"/etc/netns/sb1/resolv.conf", "/rootfs/etc/resolv.conf"}; !slices.Equal(r.Paths, want) {
		t.Errorf("resolv.conf paths %q, want %q", r.Paths, want)
	}
	if want := []string{"/etc/netns/sb1/hosts"}; !slices.Equal(h.Paths, want) {
		t.Errorf("hosts paths %q, want %q", h.Paths, want)
	}
	if !Owned(r.Paths[0]) || Owned(r.Paths[1]) {
		t.Errorf("Owned(%q), Owned(%q) = %v, %v; want true, false", r.Paths[0], r.Paths[1], Owned(r.Paths[0]), Owned(r.Paths[1]))
	}
	if r, h := ForNamespace("", nil, nil, "", ""); len(r.Paths)+len(h.Paths) != 0 {
		t.Errorf("an unnamed namespace with no paths given gets %q and %q", r.Paths, h.Paths)
	}
}

// TestWriteNotOwned: a file the caller names is written but neither
// counted nor released.
func TestWriteNotOwned(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open[struct{}, struct{}](t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "resolv.conf")
	f := &File{Data: []byte("nameserver 10.0.0.1\n"), Paths: []string{path}}
	counted := 0
	if err := Write(ctx, st, "ep1", func(string) { counted++ }, f); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != string(f.Data) {
		t.Fatalf("%s: %q, %v", path, b, err)
	}
	if counted != 0 || st.HasFileRef(path, "ep1") || !slices.Equal(f.Written, f.Paths) {
		t.Errorf("counted %d, ref %v, written %q", counted, st.HasFileRef(path, "ep1"), f.Written)
	}
	if err := ReleaseAll(ctx, st, "ep1", "", f.Written...); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the caller's file went: %v", err)
	}
}
