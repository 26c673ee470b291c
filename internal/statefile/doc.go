// Package statefile writes and reads sandnet's state files safely: atomic
// replacement (write a temporary file, fsync, rename), no symlink following,
// private permissions, bounded reads, and advisory file locks that work across
// goroutines and processes. It is the one implementation of these for the
// whole module: the state directory (internal/state) and ipam's leases both
// use it.
//
// Contract: plain file system calls; no root needed beyond access to the
// files, no namespace involved. Safe for concurrent use.
package statefile
