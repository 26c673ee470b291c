package dns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The per-sandbox files may be asked for inside a container's root
// filesystem, which the container owns: a symlink planted there (rootfs/etc
// -> /etc) must not make sandnet write or remove a file outside it. So no
// path sandnet writes follows a symlink in any component: the directory is
// opened from / with openat2(RESOLVE_NO_SYMLINKS) where the kernel has it
// (Linux 5.6), else one component at a time with O_NOFOLLOW; the file is
// then made, renamed and removed relative to that directory. A path with a
// symlink in it is refused (ErrInvalid).

// errSymlink says which path was refused.
func errSymlink(path string) error {
	return fmt.Errorf("%s has a symlink in it (sandnet does not write through symlinks: give the path with the links resolved): %w", path, ErrInvalid)
}

// components splits a clean absolute path's directory into its names.
func components(dir string) ([]string, error) {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return nil, fmt.Errorf("%s is not a clean absolute path: %w", dir, ErrInvalid)
	}
	if dir == "/" {
		return nil, nil
	}
	return strings.Split(strings.TrimPrefix(dir, "/"), "/"), nil
}

// openDir opens directory dir without following a symlink in any of its
// components, creating missing ones (mode 0755) if create is set. It
// reports whether it created the last one. The caller closes the fd.
func openDir(dir string, create bool) (fd int, created bool, err error) {
	names, err := components(dir)
	if err != nil {
		return -1, false, err
	}
	fd, err = unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	for i, name := range names {
		next, made, err := openOrMake(fd, name, create)
		created = made && i == len(names)-1
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return -1, false, errSymlink(filepath.Join(append([]string{"/"}, names[:i+1]...)...))
			}
			return -1, false, err
		}
		fd = next
	}
	return fd, created, nil
}

// openOrMake opens directory name in directory fd as openBeneath does,
// first making it (mode 0755) if it is missing and create is set; it
// reports whether it made it.
func openOrMake(fd int, name string, create bool) (int, bool, error) {
	next, err := openBeneath(fd, name)
	if !errors.Is(err, unix.ENOENT) || !create {
		return next, false, err
	}
	made := false
	if err = unix.Mkdirat(fd, name, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
		made = err == nil
		next, err = openBeneath(fd, name)
	}
	return next, made, err
}

// noOpenat2 is set once the kernel said it has no openat2 (ENOSYS).
var noOpenat2 atomic.Bool

// openBeneath opens directory name in directory fd without following a
// symlink: ELOOP (or ENOTDIR) if name is one.
func openBeneath(fd int, name string) (int, error) {
	if !noOpenat2.Load() {
		nfd, err := unix.Openat2(fd, name, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
			Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		})
		if !errors.Is(err, unix.ENOSYS) {
			return nfd, err
		}
		noOpenat2.Store(true)
	}
	return unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
}

// writeBeneath writes data to base in directory fd through a temporary
// file renamed over it: rename replaces base itself, even when base is a
// symlink, never the file it points to.
func writeBeneath(fd int, base string, data []byte) error {
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := tempPrefix(base) + hex.EncodeToString(rnd[:])
	f, err := unix.Openat(fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	for b := data; len(b) > 0 && err == nil; {
		var n int
		n, err = unix.Write(f, b)
		b = b[n:]
	}
	if err == nil {
		err = unix.Fchmod(f, 0o644)
	}
	if cerr := unix.Close(f); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(fd, tmp, fd, base)
	}
	if err != nil {
		unix.Unlinkat(fd, tmp, 0)
	}
	return err
}

// tempPrefix begins the name of writeBeneath's temporary file for base.
func tempPrefix(base string) string { return ".sandnet-" + base + "-" }

// removeTemps removes from the directory fd what writes of base killed
// midway (between writeBeneath's create and rename) left: their temporary
// files, which would keep the directory from being removed.
func removeTemps(fd int, base string) {
	dfd, err := unix.Dup(fd)
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(dfd), "")
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		if strings.HasPrefix(n, tempPrefix(base)) {
			unix.Unlinkat(fd, n, 0)
		}
	}
}
