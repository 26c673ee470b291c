// Package state owns sandnet's state directory: the records of networks and
// endpoints, the locks that order the processes sharing the directory, the
// port table (who publishes which host port) and the reference counts of
// the files written for sandboxes under /etc/netns.
//
// Layout of a state directory:
//
//	version                   the layout version (Version)
//	hostns                    the host namespace the directory serves (CheckHostNS)
//	networks.lock             taken (exclusive) to create or remove a network
//	networks/NAME.json        a network's record; NAME.lock orders its attaches
//	                          (shared) against removal, GC and repair (exclusive)
//	endpoints/NAME/ID.json    an endpoint's record
//	ports.lock, ports/        the port table, one file per protocol and port
//	dnsrefs/HASH/ID           endpoint ID uses the file whose path hashes to HASH
//	dnsrefs/HASH.lock         orders the uses of the files in the sandbox
//	                          directory whose path hashes to HASH (LockFiles)
//	ipam/                     the ipam package's leases
//	dns/                      the name-server runner's files (internal/dnsrun)
//
// Records are generic over the network and endpoint types of the root
// package, which this package does not import. Every file is written with
// internal/statefile (atomic replacement, no symlink following) and every
// lock is a statefile.Lock (flock plus an in-process mutex).
//
// Contract: plain file system calls, no namespace entered (CheckHostNS
// only compares namespace identities); root only as far
// as the directory needs it. A Store is safe for concurrent use, and several
// processes may share one directory.
package state
