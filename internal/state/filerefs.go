package state

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"

	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/statefile"
)

// The users of each file written for a sandbox (its resolv.conf and hosts
// under /etc/netns) are recorded as one empty file per endpoint in
// StateDir/dnsrefs/HASH/, so a Detach knows in O(1) whether another
// endpoint of the same sandbox (on another network) still uses it.

func (s *Store[N, E]) refDir(path string) string {
	sum := sha256.Sum256([]byte(path))
	return filepath.Join(s.dir, "dnsrefs", hex.EncodeToString(sum[:8]))
}

// AddFileRef counts endpoint id as a user of the file at path; counting it
// again is not an error.
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
// whether it was the last user (the caller removes the file then).
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
