// Package ipam hands out IP addresses from pools and keeps the leases on disk.
//
// A [Pool] is one address family's range for a network: a subnet, optionally
// narrowed to a range, minus the gateway and reserved addresses. A [Store] keeps
// the leases of all networks under one directory (sandnet uses /run/sandnet/ipam,
// on tmpfs, so leases vanish at reboot with the namespaces that used them).
// [Store.Allocate] reserves one address per pool for a [Key] (network, sandbox,
// interface); [Store.Release] gives them back.
//
// Never handed out: for IPv4 the network and broadcast addresses (except in a
// /31, where both are usable, and a /32, whose one address is), for IPv6 the
// subnet-router anycast address (except in a /127 or /128), the gateway and the
// reserved addresses. Addresses are handed out in order, after the one last
// handed out in the network for that family, wrapping around, so that a
// released address is not reused at once (stale ARP and conntrack entries).
// Nothing enumerates a pool: a /64 costs what a /24 does.
//
// # Contract
//
// No root needed, no namespace involved: the package only reads and writes
// files under the Store's directory. A Store is safe for concurrent use by
// many goroutines, and any number of Stores in any number of processes may
// share a directory: every change to a network happens under an in-process
// lock per network and an exclusive flock(2) on the network's lock file.
// Waiting for the lock honours ctx. Reads ([Store.Get], [Store.List]) take no
// lock: every file is replaced atomically, and the write order below makes a
// half-done change invisible to them.
//
// # On-disk layout
//
//	<dir>/                          0700
//	  <network>/                    0700, one per network
//	    lock                        flock(2) target; empty
//	    last_reserved_ipv4          the last IPv4 address handed out (a hint)
//	    last_reserved_ipv6          the same for IPv6
//	    10.88.0.2                   one file per address held (name = address),
//	    fd00:88::2                  content: {"network","sandbox","interface","created"}
//	    keys/                       0700
//	      <32 hex digits>           one file per lease: first 128 bits of SHA-256
//	                                over "network\x00sandbox\x00interface"; content:
//	                                {"network","sandbox","interface","addrs":["10.88.0.2/24",...],"created"}
//	    .tmp-*                      temporary files, only while a change is made
//
// Files are created 0600, written to a temporary file, fsync'd, then linked
// (address files: link(2) never replaces, so an address cannot be taken twice)
// or renamed (key files) into place; files are opened without following
// symlinks, and a symlink where a record should be counts as junk. The fsync
// keeps a power cut from leaving a torn record on a disk-backed directory; the
// directories themselves are not fsync'd, since leases are meant to live on
// tmpfs and end with the boot. A lease exists when its key file exists and each address it lists
// has a file naming the key. [Store.Allocate] writes the address files first
// and the key file last; [Store.Release] removes the key file first and the
// address files last. So a process killed at any instant leaves either a whole
// lease or none, plus at worst orphan address files (which no key file
// lists) and temporary files. Allocation reclaims an orphan address when it
// meets one; [Store.GC] removes them all.
//
// Names (network, sandbox, interface) are single path elements: non-empty, at
// most 255 bytes, no '/' or NUL, not "." or "..". Anything else is ErrInvalid.
package ipam
