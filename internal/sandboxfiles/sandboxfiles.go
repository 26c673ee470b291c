package sandboxfiles

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sandnet/sandnet/dns"
)

// Refs counts the endpoints that use each shared file, each count made
// holding the lock of the file's directory (internal/state's Store).
type Refs interface {
	// WriteShared counts endpoint id as a user of each of paths (one
	// directory), calling counted for each, then runs write.
	WriteShared(ctx context.Context, id string, paths []string, counted func(path string), write func() error) error
	// ReleaseShared drops id's use of path and runs remove if it was the last.
	ReleaseShared(ctx context.Context, path, id string, remove func() error) error
	// HasFileRef reports whether id is counted as a user of path.
	HasFileRef(path, id string) bool
}

// File is one of the files written for an endpoint (resolv.conf or
// hosts): its content, the paths it goes to and those written so far.
type File struct {
	Data    []byte
	Paths   []string
	Written []string
}

// ForNamespace returns the resolv.conf and hosts of an endpoint, with
// content resolv and hosts: for a namespace named nsName (unnamed: ""),
// each goes to its place under /etc/netns/NAME (Names), where `ip netns
// exec` bind-mounts it over /etc; and each to the path the caller names
// (none: ""), in a container's rootfs for instance.
func ForNamespace(nsName string, resolv, hosts []byte, resolvPath, hostsPath string) (*File, *File) {
	r, h := &File{Data: resolv}, &File{Data: hosts}
	if nsName != "" {
		r.Paths = append(r.Paths, filepath.Join(dns.NetnsDir, nsName, Names[0]))
		h.Paths = append(h.Paths, filepath.Join(dns.NetnsDir, nsName, Names[1]))
	}
	if resolvPath != "" {
		r.Paths = append(r.Paths, resolvPath)
	}
	if hostsPath != "" {
		h.Paths = append(h.Paths, hostsPath)
	}
	return r, h
}

// Names are the names of the files written for a named namespace under
// /etc/netns/NAME.
var Names = [2]string{"resolv.conf", "hosts"}

// Owned reports whether the file at path is sandnet's, removed when its
// last endpoint goes: the files under /etc/netns are; a file the caller
// asked for stays.
func Owned(path string) bool {
	return strings.HasPrefix(path, dns.NetnsDir+"/")
}

// Write writes each of files to its paths for endpoint id, calling counted
// for each owned path once id is counted as its user (the caller undoes
// that with Release if what it does fails later). The owned files go into
// one directory per sandbox, all counted and written holding the
// directory's lock once (Refs.WriteShared) and opening it once
// (dns.WriteFiles).
func Write(ctx context.Context, refs Refs, id string, counted func(path string), files ...*File) error {
	var (
		owned []dns.File
		paths []string
	)
	for _, f := range files {
		for _, path := range f.Paths {
			if !Owned(path) {
				if _, err := dns.WriteFile(ctx, path, f.Data); err != nil {
					return err
				}
				f.Written = append(f.Written, path)
				continue
			}
			paths = append(paths, path)
			owned = append(owned, dns.File{Name: filepath.Base(path), Data: f.Data})
		}
	}
	if len(paths) == 0 {
		return nil
	}
	err := refs.WriteShared(ctx, id, paths, counted, func() error { return dns.WriteFiles(ctx, filepath.Dir(paths[0]), owned...) })
	if err != nil {
		return err
	}
	for _, f := range files {
		f.Written = slices.Clone(f.Paths) // all of them, in order
	}
	return nil
}

// Release drops endpoint id's use of the file at path and removes the file
// when no other endpoint uses it, holding the lock of the sandbox's files.
func Release(ctx context.Context, refs Refs, path, id string) error {
	return refs.ReleaseShared(ctx, path, id, func() error { return dns.RemoveFile(ctx, path, true) })
}

// ReleaseAll releases (Release) endpoint id's use of the owned files among
// written, and of the files of the named namespace nsName (empty: none)
// that id is counted as a user of although they were never recorded (an
// attach killed between writing the files and recording them);
// idempotent.
func ReleaseAll(ctx context.Context, refs Refs, id, nsName string, written ...string) error {
	var paths []string
	for _, p := range written {
		if Owned(p) {
			paths = append(paths, p)
		}
	}
	if nsName != "" {
		for _, f := range Names {
			p := filepath.Join(dns.NetnsDir, nsName, f)
			if !slices.Contains(paths, p) && refs.HasFileRef(p, id) {
				paths = append(paths, p)
			}
		}
	}
	var errs []error
	for _, p := range paths {
		errs = append(errs, Release(ctx, refs, p, id))
	}
	return errors.Join(errs...)
}
