package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/statefile"
)

// The users of each file written for a sandbox (its resolv.conf and hosts
// under /etc/netns) are recorded as one empty file per endpoint in
// StateDir/dnsrefs/HASH/, so a Detach knows in O(1) whether another
// endpoint of the same sandbox (on another network) still uses it.
//
// Counting a use and writing the file, and dropping a use and removing the
// file, are each done holding the lock of the sandbox's directory
// (LockFiles): otherwise an Attach of the sandbox to one network and a
// Detach from another interleave, and the Detach removes the file (or the
// directory) the Attach has just written (or is writing into).

func (s *Store[N, E]) refDir(path string) string {
	sum := sha256.Sum256([]byte(path))
	return filepath.Join(s.dir, "dnsrefs", hex.EncodeToString(sum[:8]))
}

// FilesLock is the lock of the files written into one sandbox's directory.
type FilesLock struct {
	l    *statefile.Lock
	path string
	dir  string
}

// LockFiles takes the lock of the files in dir, the directory written for
// one sandbox (/etc/netns/NAME), waiting until it is free or ctx ends.
func (s *Store[N, E]) LockFiles(ctx context.Context, dir string) (*FilesLock, error) {
	refs := filepath.Join(s.dir, "dnsrefs")
	if err := statefile.MkdirAll(refs); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	path := filepath.Join(refs, hex.EncodeToString(sum[:8])+".lock")
	l, err := statefile.Acquire(ctx, path, false)
	if err != nil {
		return nil, err
	}
	return &FilesLock{l: l, path: path, dir: dir}, nil
}

// Release drops the lock; once the sandbox's directory is gone (its last
// file removed), the lock file goes too, so they do not pile up.
func (fl *FilesLock) Release() {
	if _, err := os.Lstat(fl.dir); errors.Is(err, fs.ErrNotExist) {
		fl.l.RemoveLock(fl.path)
	}
	fl.l.Release()
}

// AddFileRef counts endpoint id as a user of the file at path; counting it
// again is not an error. The caller holds LockFiles of the file's directory.
func (s *Store[N, E]) AddFileRef(path, id string) error {
	dir := s.refDir(path)
	if err := statefile.MkdirAll(dir); err != nil {
		return err
	}
	if err := statefile.Create(filepath.Join(dir, id), []byte(path+"\n")); err != nil && !errors.Is(err, errkind.Exists) {
		return err
	}
	return nil
}

// HasFileRef reports whether endpoint id is counted as a user of the file
// at path (an attach killed before recording its files left only that).
func (s *Store[N, E]) HasFileRef(path, id string) bool {
	_, err := os.Lstat(filepath.Join(s.refDir(path), id))
	return err == nil
}

// DropFileRef drops endpoint id's use of the file at path and reports
// whether it was the last user (the caller removes the file then). The
// caller holds LockFiles of the file's directory.
func (s *Store[N, E]) DropFileRef(path, id string) (last bool, err error) {
	dir := s.refDir(path)
	if err := statefile.Remove(filepath.Join(dir, id)); err != nil {
		return false, err
	}
	if left, err := os.ReadDir(dir); err == nil && len(left) > 0 {
		return false, nil // another endpoint of the sandbox still uses it
	}
	os.Remove(dir)
	return true, nil
}

// WriteShared counts endpoint id as a user of each file at paths (all in
// one directory), calling counted for each (where the caller notes that
// the use must be dropped again, with ReleaseShared, if what it does fails
// later), and then writes the files with write; all holding LockFiles of
// their directory once (a ReleaseShared of another of the sandbox's
// endpoints waits).
func (s *Store[N, E]) WriteShared(ctx context.Context, id string, paths []string, counted func(path string), write func() error) error {
	if len(paths) == 0 {
		return nil
	}
	dir := filepath.Dir(paths[0])
	for _, p := range paths[1:] {
		if filepath.Dir(p) != dir {
			return fmt.Errorf("writing %s and %s: not in one directory: %w", paths[0], p, errkind.Invalid)
		}
	}
	lock, err := s.LockFiles(ctx, dir)
	if err != nil {
		return err
	}
	defer lock.Release()
	for _, p := range paths {
		if err := s.AddFileRef(p, id); err != nil {
			return err
		}
		counted(p)
	}
	return write()
}

// ReleaseShared drops endpoint id's use of the file at path and, if it was
// the last user, removes the file with remove; holding LockFiles of the
// file's directory.
func (s *Store[N, E]) ReleaseShared(ctx context.Context, path, id string, remove func() error) error {
	lock, err := s.LockFiles(ctx, filepath.Dir(path))
	if err != nil {
		return err
	}
	defer lock.Release()
	last, err := s.DropFileRef(path, id)
	if err != nil || !last {
		return err
	}
	return remove()
}
