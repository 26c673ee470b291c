package dns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// sandboxDir returns a fresh sandbox directory name under NetnsDir and
// its home, both removed when t ends.
func sandboxDir(t *testing.T) (dir, home string) {
	b := make([]byte, 4)
	rand.Read(b)
	name := "snt-linked-" + hex.EncodeToString(b)
	dir, home = filepath.Join(NetnsDir, name), filepath.Join(NetnsHomeDir(), name)
	t.Cleanup(func() {
		os.RemoveAll(dir)
		os.RemoveAll(home)
	})
	return dir, home
}

// TestSandboxDirIsALinkToItsHome: a sandbox's directory under /etc/netns
// is made as a link to its home in NetnsHomeDir, once the files are there, and
// kept through rewrites; removing the files one by one removes the home
// and the link with the last. A real directory is written as before, a
// link elsewhere is refused, and a home left without its link (a writer
// killed before linking) is cleaned by the removal.
func TestSandboxDirIsALinkToItsHome(t *testing.T) {
	ctx := context.Background()
	files := []File{{Name: "resolv.conf", Data: []byte("nameserver 10.0.0.1\n")}, {Name: "hosts", Data: []byte("10.0.0.2 sb\n")}}

	dir, home := sandboxDir(t)
	for round, want := range []string{"nameserver 10.0.0.1\n", "nameserver 10.0.0.9\n"} {
		files[0].Data = []byte(want)
		if err := WriteFiles(ctx, dir, files...); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if target, err := os.Readlink(dir); err != nil || target != home {
			t.Fatalf("round %d: %s links to %q (%v), want %s", round, dir, target, err, home)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "resolv.conf")); err != nil || string(b) != want {
			t.Fatalf("round %d: resolv.conf through the link = %q, %v; want %q", round, b, err, want)
		}
	}
	if _, err := WriteFile(ctx, filepath.Join(dir, "resolv.conf"), []byte("nameserver 10.0.0.7\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "resolv.conf")); string(b) != "nameserver 10.0.0.7\n" {
		t.Fatalf("WriteFile through the link wrote %q", b)
	}
	if err := RemoveFile(ctx, filepath.Join(dir, "resolv.conf"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hosts")); err != nil {
		t.Fatalf("hosts gone with resolv.conf: %v", err)
	}
	if err := RemoveFile(ctx, filepath.Join(dir, "hosts"), true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, home} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after its last file went: %v", p, err)
		}
	}

	t.Run("real directory", func(t *testing.T) {
		dir, home := sandboxDir(t)
		os.Mkdir(dir, 0o755)
		if err := WriteFiles(ctx, dir, files...); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v, %v; want the directory kept", dir, fi, err)
		}
		if _, err := os.Lstat(home); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a home made for a real directory: %v", err)
		}
		for _, f := range files {
			if err := RemoveFile(ctx, filepath.Join(dir, f.Name), true); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", dir, err)
		}
	})

	t.Run("link elsewhere", func(t *testing.T) {
		dir, _ := sandboxDir(t)
		elsewhere := t.TempDir()
		os.WriteFile(filepath.Join(elsewhere, "hosts"), []byte("keep\n"), 0o644)
		os.Symlink(elsewhere, dir)
		if err := WriteFiles(ctx, dir, files...); !errors.Is(err, ErrInvalid) {
			t.Errorf("writing through a link elsewhere: %v, want ErrInvalid", err)
		}
		if err := RemoveFile(ctx, filepath.Join(dir, "hosts"), true); !errors.Is(err, ErrInvalid) {
			t.Errorf("removing through a link elsewhere: %v, want ErrInvalid", err)
		}
		if b, _ := os.ReadFile(filepath.Join(elsewhere, "hosts")); string(b) != "keep\n" {
			t.Errorf("the link's target changed: %q", b)
		}
	})

	t.Run("home without its link", func(t *testing.T) {
		dir, home := sandboxDir(t)
		if err := WriteFiles(ctx, home, files...); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := RemoveFile(ctx, filepath.Join(dir, f.Name), true); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Lstat(home); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", home, err)
		}
	})
}

// TestSandboxDirHomeNotOurs: where the place of the homes is not a
// directory of this user's alone (another user made it first in /dev/shm,
// anyone may write to it, or someone put a symlink or a file there), a
// sandbox's directory is a real one: attaching still works.
func TestSandboxDirHomeNotOurs(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "homes")
	os.Mkdir(root, 0o755)
	saved := netnsHomeDir
	netnsHomeDir = func() string { return root }
	t.Cleanup(func() { netnsHomeDir = saved })
	for _, c := range []struct {
		name  string
		spoil func() error
	}{
		{"writable by others", func() error { return os.Chmod(root, 0o777) }},
		{"another user's", func() error { return os.Chown(root, 65534, 65534) }},
		{"a symlink", func() error {
			os.Remove(root)
			return os.Symlink(t.TempDir(), root)
		}},
		{"a file", func() error {
			os.Remove(root)
			return os.WriteFile(root, nil, 0o644)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.spoil(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				os.Remove(root)
				os.Mkdir(root, 0o755)
			})
			dir, home := sandboxDir(t)
			if err := WriteFiles(ctx, dir, File{Name: "hosts", Data: []byte("10.0.0.2 sb\n")}); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
				t.Fatalf("%s: %v, %v; want a real directory", dir, fi, err)
			}
			if _, err := os.Lstat(home); err == nil {
				t.Errorf("a home made in a place not ours: %s", home)
			}
			if err := RemoveFile(ctx, filepath.Join(dir, "hosts"), true); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left: %v", dir, err)
			}
		})
	}
}
