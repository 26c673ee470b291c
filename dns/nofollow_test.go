package dns

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFileFollowsNoSymlink: a container's rootfs whose etc is a
// symlink out of it (to a directory standing for the host's /etc) gets
// neither its resolv.conf written nor removed through the link, with
// openat2 and with the O_NOFOLLOW fallback; a file that is itself a symlink
// is replaced, its target left alone.
func TestWriteFileFollowsNoSymlink(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "O_NOFOLLOW"
		}
		t.Run(name, func(t *testing.T) {
			if fallback {
				noOpenat2.Store(true)
				t.Cleanup(func() { noOpenat2.Store(false) })
			}
			ctx := context.Background()
			tmp := t.TempDir()
			hostEtc := filepath.Join(tmp, "host-etc")
			os.Mkdir(hostEtc, 0o755)
			precious := filepath.Join(hostEtc, "resolv.conf")
			os.WriteFile(precious, []byte("nameserver 192.0.2.53\n"), 0o644)
			rootfs := filepath.Join(tmp, "rootfs")
			os.Mkdir(rootfs, 0o755)
			if err := os.Symlink(hostEtc, filepath.Join(rootfs, "etc")); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{filepath.Join(rootfs, "etc", "resolv.conf"), filepath.Join(rootfs, "etc", "sub", "hosts")} {
				if _, err := WriteFile(ctx, path, []byte("nameserver 6.6.6.6\n")); !errors.Is(err, ErrInvalid) {
					t.Errorf("WriteFile(%s) through a symlinked dir = %v, want ErrInvalid", path, err)
				}
				if err := RemoveFile(ctx, path, true); !errors.Is(err, ErrInvalid) {
					t.Errorf("RemoveFile(%s) through a symlinked dir = %v, want ErrInvalid", path, err)
				}
			}
			if b, _ := os.ReadFile(precious); string(b) != "nameserver 192.0.2.53\n" {
				t.Fatalf("the file behind the symlink changed: %q", b)
			}
			if _, err := os.Stat(filepath.Join(hostEtc, "sub")); err == nil {
				t.Error("a directory was made behind the symlink")
			}
			if ents, _ := os.ReadDir(hostEtc); len(ents) != 1 {
				t.Errorf("files left behind the symlink: %v", ents)
			}

			// The file itself a symlink: replaced, not followed.
			real := filepath.Join(tmp, "rootfs2", "etc")
			os.MkdirAll(real, 0o755)
			link := filepath.Join(real, "resolv.conf")
			os.Symlink(precious, link)
			if _, err := WriteFile(ctx, link, []byte("nameserver 10.88.0.1\n")); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s is not a regular file now: %v %v", link, fi.Mode(), err)
			}
			if b, _ := os.ReadFile(precious); string(b) != "nameserver 192.0.2.53\n" {
				t.Fatalf("the symlink's target was written: %q", b)
			}
			os.Remove(link)
			os.Symlink(precious, link)
			if err := RemoveFile(ctx, link, false); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(precious); err != nil {
				t.Fatalf("removing the symlink removed its target: %v", err)
			}
			// A plain path still works, and its new directory goes with its last file.
			p := filepath.Join(tmp, "netns", "sb", "resolv.conf")
			if created, err := WriteFile(ctx, p, []byte("x\n")); err != nil || !created {
				t.Fatalf("WriteFile(%s) = %v, %v", p, created, err)
			}
			if err := RemoveFile(ctx, p, true); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Dir(p)); !os.IsNotExist(err) {
				t.Errorf("%s left: %v", filepath.Dir(p), err)
			}
			for _, bad := range []string{"relative/resolv.conf", "/tmp/../h16-never/x"} {
				if _, err := WriteFile(ctx, bad, nil); !errors.Is(err, ErrInvalid) {
					t.Errorf("WriteFile(%q) = %v, want ErrInvalid", bad, err)
				}
			}
		})
	}
}
