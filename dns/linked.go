package dns

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// A sandbox's directory under NetnsDir is a symlink: NetnsDir/NAME points
// to NAME in NetnsHomeDir(), where its files are. The files stay where
// every reader looks for them (`ip netns exec NAME` opens /etc/netns/NAME,
// following a link as any reader does), and cost what files in memory
// cost.
//
// Why: on the file system of /etc, a sandbox's files cost one inode each
// (its directory and two files), and making an inode can cost far more
// than writing it. ext4 without a journal passes over every inode of the
// same group freed in the last minute (six while their block is not yet
// written back) before it reuses one, so with sandboxes coming and going
// each new file cost up to a millisecond. A link is one inode, and the
// kernel passes over a third as many freed ones; a file on tmpfs costs
// nothing of the kind.
//
// That link is the one symlink the writers here follow, and only when it
// points exactly there. A sandbox's directory that is a real directory
// (made by hand, or by an older sandnet) is written into as before.

// NetnsHomeDir returns the directory that holds the files of each
// /etc/netns/NAME sandnet writes, in NAME, with /etc/netns/NAME a symlink
// to it (see WriteFile): /run/sandnet/etc-netns where /run is in memory
// (tmpfs), as the named namespaces themselves are (/run/netns); else
// /dev/shm/sandnet-etc-netns (tmpfs on Linux as a rule). One
// place whatever a Host's state dir, as /etc/netns is, and a path short
// enough for a link to it to fit in the link's inode. It is sandnet's
// only while it is a directory of the caller's user that no one else can
// write to (/dev/shm is everyone's): otherwise sandboxes get real
// directories under /etc/netns, as they did before.
func NetnsHomeDir() string { return netnsHomeDir() }

var netnsHomeDir = sync.OnceValue(func() string {
	var st unix.Statfs_t
	if unix.Statfs("/run", &st) == nil && (st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC) {
		return "/run/sandnet/etc-netns"
	}
	return "/dev/shm/sandnet-etc-netns"
})

// errNotOurs: NetnsHomeDir is not a directory only the caller can write.
var errNotOurs = fmt.Errorf("not a directory of this user's alone: %w", ErrInvalid)

// openHome opens home, NAME in NetnsHomeDir, making what is missing if
// create is set, once NetnsHomeDir is known to be the caller's alone.
func openHome(home string, create bool) (fd int, created bool, err error) {
	root := filepath.Dir(home)
	rfd, _, err := openDir(root, create)
	if errors.Is(err, unix.ENOENT) && !create {
		return -1, false, err
	}
	if err != nil {
		// Not a directory of ours either: anyone can put a symlink or a
		// file there in /dev/shm first.
		return -1, false, fmt.Errorf("%s: %w (%w)", root, errNotOurs, err)
	}
	defer unix.Close(rfd)
	var st unix.Stat_t
	if err := unix.Fstat(rfd, &st); err != nil {
		return -1, false, err
	}
	if st.Uid != uint32(unix.Geteuid()) || st.Mode&0o022 != 0 {
		return -1, false, fmt.Errorf("%s: %w", root, errNotOurs)
	}
	fd, created, err = openOrMake(rfd, filepath.Base(home), create)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		err = errSymlink(home)
	}
	return fd, created, err
}

// filesDir is a directory opened to write files into or remove them from.
type filesDir struct {
	fd      int    // the directory the files are in
	path    string // its path: the caller's, or the home the link points to
	created bool   // made by this open
	// For a sandbox's directory kept in its home: the directory holding
	// the link (NetnsDir), the link's name, and whether the link is there
	// (else it is made once the files are, by link).
	pfd    int
	name   string
	linked bool
}

// netnsHome returns the home of dir, a sandbox's directory directly under
// NetnsDir (NAME in NetnsHomeDir), and whether dir is one.
func netnsHome(dir string) (string, bool) {
	parent, name := filepath.Split(dir)
	if filepath.Clean(parent) != NetnsDir || name == "" || name == "." || name == ".." {
		return "", false
	}
	return filepath.Join(NetnsHomeDir(), name), true
}

// openFilesDir opens directory dir as openDir does (no symlink followed,
// missing directories made if create is set), except for a sandbox's
// directory under NetnsDir: a link to its home is followed there, and a
// missing one is made in its home (the caller then calls link once the
// files are written). With create unset, a home whose link is missing is
// opened (a writer was killed before it linked it), so that what it holds
// can be removed. ENOENT if there is nothing to open.
func openFilesDir(dir string, create bool) (*filesDir, error) {
	home, sandbox := netnsHome(dir)
	if !sandbox {
		fd, created, err := openDir(dir, create)
		if err != nil {
			return nil, err
		}
		return &filesDir{fd: fd, path: dir, created: created, pfd: -1}, nil
	}
	pfd, _, err := openDir(NetnsDir, create)
	if err != nil {
		return nil, err
	}
	d := &filesDir{fd: -1, pfd: pfd, name: filepath.Base(dir), path: home}
	buf := make([]byte, len(home)+1)
	n, err := unix.Readlinkat(pfd, d.name, buf)
	switch {
	case errors.Is(err, unix.EINVAL): // there, and not a link
		d.path, d.pfd = dir, -1
		d.fd, err = openBeneath(pfd, d.name)
		unix.Close(pfd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			err = errSymlink(dir) // became a link meanwhile
		}
	case errors.Is(err, unix.ENOENT):
		d.fd, d.created, err = openHome(home, create)
		switch {
		case errors.Is(err, errNotOurs) && create:
			// No home to trust: a real directory, as before links.
			unix.Close(pfd)
			d.path, d.pfd = dir, -1
			d.fd, d.created, err = openDir(dir, true)
		case errors.Is(err, errNotOurs):
			err = unix.ENOENT // nothing of ours to remove
		}
	case err != nil:
	case string(buf[:n]) != home:
		err = errSymlink(dir)
	default:
		d.linked = true
		d.fd, _, err = openHome(home, create)
	}
	if err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// link makes the missing link to the home the files were written in.
func (d *filesDir) link() error {
	if d.pfd < 0 || d.linked {
		return nil
	}
	err := unix.Symlinkat(d.path, d.pfd, d.name)
	if errors.Is(err, unix.EEXIST) {
		// Another writer of the same sandbox linked it first: fine if
		// it is the same link.
		buf := make([]byte, len(d.path)+1)
		if n, rerr := unix.Readlinkat(d.pfd, d.name, buf); rerr == nil && string(buf[:n]) == d.path {
			err = nil
		}
	}
	d.linked = err == nil
	return err
}

// removeIfEmpty removes the directory when it holds nothing more: for a
// home, the home and then its link; else the directory itself. A
// directory that is not empty (another file, or someone just added one)
// stays. It reports whether it removed it.
func (d *filesDir) removeIfEmpty() bool {
	parent, name := filepath.Split(d.path)
	pfd, _, err := openDir(filepath.Clean(parent), false)
	if err != nil {
		return false
	}
	defer unix.Close(pfd)
	if unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR) != nil {
		return false
	}
	if d.linked {
		unix.Unlinkat(d.pfd, d.name, 0)
	}
	return true
}

func (d *filesDir) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
	if d.pfd >= 0 {
		unix.Close(d.pfd)
	}
}
