package ipam

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/internal/errkind"
	"github.com/sandnet/sandnet/internal/statefile"
)

// Errors that callers can test with errors.Is. They are the sandnet-wide kinds.
var (
	ErrInvalid   = errkind.Invalid   // malformed pool, name, or static address
	ErrExhausted = errkind.Exhausted // no free address left in a pool
	ErrInUse     = errkind.InUse     // static address held by another key; key holds other addresses
	ErrNotFound  = errkind.NotFound  // no lease for the key
)

// Store keeps the leases of all networks under one directory (e.g. /run/sandnet/ipam).
// A Store is safe for use by many goroutines, and any number of Stores, in this or
// other processes, may share a directory.
type Store struct {
	dir string

	mu    sync.Mutex
	locks map[string]chan struct{} // per network: a one-slot semaphore
}

// Open returns the Store kept in dir, creating dir (mode 0700) if missing.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("opening ipam store: directory not given: %w", ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening ipam store %s: %w", dir, err)
	}
	return &Store{dir: dir, locks: make(map[string]chan struct{})}, nil
}

// Dir returns the directory the Store keeps its leases in.
func (s *Store) Dir() string { return s.dir }

// Allocate reserves one address from each pool for key and returns the lease.
//
// static[i], when valid, is the address wanted from pools[i]; it is ErrInvalid
// when outside the pool's range (or subnet) or equal to its gateway, network,
// broadcast, subnet-router anycast or a reserved address, and ErrInUse when
// another key holds it. Other addresses are handed out in order, starting after
// the one last handed out in the network for that family and wrapping around, so
// that a just-released address is not reused at once. ErrExhausted means that a
// pool has no free address left.
//
// The pools must be of distinct address families. If key already holds a lease
// whose addresses still satisfy the request, Allocate returns it unchanged;
// if it holds one that does not, Allocate fails with ErrInUse (Release first).
// On failure nothing is reserved.
func (s *Store) Allocate(ctx context.Context, pools []Pool, key Key, static ...netip.Addr) (Lease, error) {
	if err := s.checkRequest(pools, key, static); err != nil {
		return Lease{}, fmt.Errorf("allocating addresses for %s: %w", key, err)
	}
	for i, st := range static {
		if !st.IsValid() {
			continue
		}
		if ok, why := pools[i].usable(st); !ok {
			return Lease{}, fmt.Errorf("allocating address %s in %s for network %q: address %s: %w",
				st, pools[i].Subnet, key.Network, why, ErrInvalid)
		}
	}
	unlock, err := s.lockNetwork(ctx, key.Network, true)
	if err != nil {
		return Lease{}, fmt.Errorf("allocating addresses for %s: %w", key, err)
	}
	defer unlock()

	dir := s.netDir(key.Network)
	old, err := s.lookup(key)
	switch {
	case err == nil:
		if satisfies(old, pools, static) {
			return old, nil
		}
		return Lease{}, fmt.Errorf("allocating addresses for %s: key already holds %v, which does not satisfy the request: %w",
			key, old.Addrs, ErrInUse)
	case errors.Is(err, errBroken):
		// A key file whose addresses are not all held by the key: not a lease.
		// Dropping it turns those address files into orphans, reclaimed below.
		if err := removeIfExists(keyPath(dir, key)); err != nil {
			return Lease{}, fmt.Errorf("allocating addresses for %s: removing broken key file: %w", key, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return Lease{}, fmt.Errorf("allocating addresses for %s: %w", key, err)
	}

	lease := Lease{Key: key, Created: time.Now().UTC()}
	rec, err := json.Marshal(addrRecord{Key: key, Created: lease.Created})
	if err != nil {
		return Lease{}, fmt.Errorf("allocating addresses for %s: encoding address record: %w", key, err)
	}
	// Address files first, the key file last: a crash in between leaves address
	// files that no key file lists (orphans), which allocation reclaims.
	var claimed []netip.Addr
	undo := func() {
		for _, a := range claimed {
			os.Remove(addrPath(dir, a))
		}
	}
	for i, p := range pools {
		var want netip.Addr
		if i < len(static) {
			want = static[i]
		}
		a, err := s.claim(ctx, dir, p, key, want, rec)
		if err != nil {
			undo()
			return Lease{}, err
		}
		claimed = append(claimed, a)
		lease.Addrs = append(lease.Addrs, netip.PrefixFrom(a, p.Subnet.Bits()))
	}
	b, err := json.Marshal(keyRecord{Key: key, Addrs: lease.Addrs, Created: lease.Created})
	if err == nil {
		err = statefile.Replace(keyPath(dir, key), b, true)
	}
	if err != nil {
		undo()
		return Lease{}, fmt.Errorf("allocating addresses for %s: writing key file: %w", key, err)
	}
	// The cursors are hints: a stale one only costs a probe, so no fsync, and
	// a failure to write one does not fail the allocation.
	for i, a := range claimed {
		if i >= len(static) || !static[i].IsValid() {
			statefile.Replace(cursorPath(dir, a), []byte(a.String()+"\n"), false)
		}
	}
	return lease, nil
}

// checkRequest validates what Allocate is given, before any lock is taken.
func (s *Store) checkRequest(pools []Pool, key Key, static []netip.Addr) error {
	if err := key.validate(); err != nil {
		return err
	}
	if len(pools) == 0 {
		return fmt.Errorf("no pool given: %w", ErrInvalid)
	}
	if len(static) > len(pools) {
		return fmt.Errorf("%d static addresses for %d pools: %w", len(static), len(pools), ErrInvalid)
	}
	var v4, v6 bool
	for _, p := range pools {
		if err := p.Validate(); err != nil {
			return err
		}
		seen := &v6
		if p.Subnet.Addr().Is4() {
			seen = &v4
		}
		if *seen {
			return fmt.Errorf("two pools of the same address family (%s): %w", p.Subnet, ErrInvalid)
		}
		*seen = true
	}
	return nil
}

// satisfies reports whether lease l answers a request for pools and static.
func satisfies(l Lease, pools []Pool, static []netip.Addr) bool {
	if len(l.Addrs) != len(pools) {
		return false
	}
	for i, p := range pools {
		a := l.Addrs[i]
		if a.Bits() != p.Subnet.Bits() {
			return false
		}
		if ok, _ := p.usable(a.Addr()); !ok {
			return false
		}
		if i < len(static) && static[i].IsValid() && static[i] != a.Addr() {
			return false
		}
	}
	return true
}

// claim reserves one address of p for key in dir, writing rec as its address
// file: want if valid, else the next free address after the family's cursor.
// The caller holds the network's lock.
func (s *Store) claim(ctx context.Context, dir string, p Pool, key Key, want netip.Addr, rec []byte) (netip.Addr, error) {
	first, last := p.span()
	where := p.Subnet
	if p.Range.IsValid() {
		where = p.Range
	}
	tmp, err := statefile.WriteTemp(dir, rec, true)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("allocating address in %s for network %q: writing address record: %w", where, key.Network, err)
	}
	defer os.Remove(tmp) // a no-op once renamed into place

	// try claims a, the address file a hard link to tmp: link(2) never replaces
	// a file, so a taken address stays taken even without the lock.
	try := func(a netip.Addr) (ok bool, holder Key, err error) {
		dst := addrPath(dir, a)
		err = os.Link(tmp, dst)
		if err == nil {
			return true, Key{}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return false, Key{}, err
		}
		holder, orphan, err := s.holder(dir, a)
		if err != nil || !orphan {
			return false, holder, err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return false, Key{}, err
		}
		return true, Key{}, nil
	}

	if want.IsValid() {
		ok, holder, err := try(want)
		switch {
		case err != nil:
			return netip.Addr{}, fmt.Errorf("allocating address %s in %s for network %q: %w", want, where, key.Network, err)
		case !ok:
			return netip.Addr{}, fmt.Errorf("allocating address %s in %s for network %q: address is held by %s: %w",
				want, where, key.Network, holder, ErrInUse)
		}
		return want, nil
	}

	start := first
	if c := readCursor(dir, first); c.IsValid() && c.BitLen() == first.BitLen() && !c.Less(first) && c.Less(last) {
		start = c.Next()
	}
	a := start
	for n := 0; ; n++ {
		if n%64 == 63 {
			if err := ctx.Err(); err != nil {
				return netip.Addr{}, fmt.Errorf("allocating address in %s for network %q: %w", where, key.Network, context.Cause(ctx))
			}
		}
		if !p.excluded(a) {
			ok, _, err := try(a)
			if err != nil {
				return netip.Addr{}, fmt.Errorf("allocating address %s in %s for network %q: %w", a, where, key.Network, err)
			}
			if ok {
				return a, nil
			}
		}
		// The walk ends: every step finds an address that is excluded or has a
		// file, and there are finitely many of those, even in a /64.
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("allocating address in %s for network %q: %w", where, key.Network, ErrExhausted)
		}
	}
}

// holder returns the key that the address file for a names, and whether the
// file is an orphan: no key file lists a for that key (a crash between the
// steps of Allocate or Release), or the file is unreadable as a record.
func (s *Store) holder(dir string, a netip.Addr) (Key, bool, error) {
	var ar addrRecord
	if err := readJSON(addrPath(dir, a), &ar); err != nil {
		if errors.Is(err, errCorrupt) {
			return Key{}, true, nil
		}
		return Key{}, false, fmt.Errorf("reading address file: %w", err)
	}
	var kr keyRecord
	err := readJSON(keyPath(dir, ar.Key), &kr)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errCorrupt):
		return ar.Key, true, nil
	case err != nil:
		return ar.Key, false, fmt.Errorf("reading key file of %s: %w", ar.Key, err)
	}
	if kr.Key != ar.Key {
		return ar.Key, true, nil
	}
	for _, p := range kr.Addrs {
		if p.Addr() == a {
			return ar.Key, false, nil
		}
	}
	return ar.Key, true, nil
}

// errBroken marks a key file that does not describe a whole lease.
var errBroken = errors.New("broken lease")

// lookup returns key's lease. Its error matches fs.ErrNotExist when there is
// no key file, errBroken when the key file is unreadable or lists an address
// whose file does not name key. It takes no lock: every file is replaced
// atomically, Allocate writes the key file last and Release removes it first.
func (s *Store) lookup(key Key) (Lease, error) {
	dir := s.netDir(key.Network)
	var kr keyRecord
	if err := readJSON(keyPath(dir, key), &kr); err != nil {
		if errors.Is(err, errCorrupt) {
			return Lease{}, fmt.Errorf("%w: %w", errBroken, err)
		}
		return Lease{}, err
	}
	if kr.Key != key {
		return Lease{}, fmt.Errorf("key file %s names %s, not %s: %w", keyPath(dir, key), kr.Key, key, errBroken)
	}
	if err := s.checkAddrs(dir, kr); err != nil {
		return Lease{}, err
	}
	return Lease{Key: kr.Key, Addrs: kr.Addrs, Created: kr.Created}, nil
}

// checkAddrs returns errBroken unless every address of kr has a file naming kr.Key.
func (s *Store) checkAddrs(dir string, kr keyRecord) error {
	if len(kr.Addrs) == 0 {
		return fmt.Errorf("key file of %s lists no address: %w", kr.Key, errBroken)
	}
	for _, p := range kr.Addrs {
		var ar addrRecord
		err := readJSON(addrPath(dir, p.Addr()), &ar)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, errCorrupt):
			return fmt.Errorf("address %s of %s: %w", p.Addr(), kr.Key, errBroken)
		case err != nil:
			return err
		case ar.Key != kr.Key:
			return fmt.Errorf("address %s of %s is held by %s: %w", p.Addr(), kr.Key, ar.Key, errBroken)
		}
	}
	return nil
}

// readKeyFile reads the key file called name in dir's keys directory. Its
// error is errBroken if the file is not a key record for a key of network
// that hashes to name.
func readKeyFile(dir, network, name string) (keyRecord, error) {
	var kr keyRecord
	err := readJSON(filepath.Join(dir, keysDir, name), &kr)
	switch {
	case errors.Is(err, errCorrupt):
		return kr, fmt.Errorf("%w: %w", errBroken, err)
	case err != nil:
		return kr, err
	case kr.Key.Network != network || kr.Key.fileName() != name:
		return kr, fmt.Errorf("key file %s does not belong to %s: %w", name, kr.Key, errBroken)
	}
	return kr, nil
}

// Release gives up key's lease. A missing lease (or network) is success.
func (s *Store) Release(ctx context.Context, key Key) error {
	if err := key.validate(); err != nil {
		return fmt.Errorf("releasing lease of %s: %w", key, err)
	}
	unlock, err := s.lockNetwork(ctx, key.Network, false)
	if errors.Is(err, errNoNetwork) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasing lease of %s: %w", key, err)
	}
	defer unlock()

	dir := s.netDir(key.Network)
	var kr keyRecord
	err = readJSON(keyPath(dir, key), &kr)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil && !errors.Is(err, errCorrupt):
		return fmt.Errorf("releasing lease of %s: %w", key, err)
	}
	// The key file first: once it is gone there is no lease, and a crash
	// leaves only orphan address files, which allocation reclaims.
	if err := removeIfExists(keyPath(dir, key)); err != nil {
		return fmt.Errorf("releasing lease of %s: removing key file: %w", key, err)
	}
	if kr.Key != key {
		return nil // corrupt, or not ours: its address files are orphans now
	}
	var errs []error
	for _, p := range kr.Addrs {
		var ar addrRecord
		err := readJSON(addrPath(dir, p.Addr()), &ar)
		if err != nil || ar.Key != key {
			continue // gone, or someone else's: leave it
		}
		if err := removeIfExists(addrPath(dir, p.Addr())); err != nil {
			errs = append(errs, fmt.Errorf("releasing address %s of %s: %w", p.Addr(), key, err))
		}
	}
	return errors.Join(errs...)
}

// Get returns key's lease, or an error matching ErrNotFound.
func (s *Store) Get(key Key) (Lease, error) {
	if err := key.validate(); err != nil {
		return Lease{}, fmt.Errorf("getting lease of %s: %w", key, err)
	}
	l, err := s.lookup(key)
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errBroken):
		return Lease{}, fmt.Errorf("getting lease of %s: %w", key, ErrNotFound)
	}
	return Lease{}, fmt.Errorf("getting lease of %s: %w", key, err)
}

// List returns every lease of network, sorted by address (the first pool's,
// then the next). A network without leases, or without a directory, gives none.
func (s *Store) List(network string) ([]Lease, error) {
	if err := checkName("network", network); err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	dir := s.netDir(network)
	entries, err := os.ReadDir(filepath.Join(dir, keysDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing leases of network %q: %w", network, err)
	}
	var leases []Lease
	for _, e := range entries {
		if statefile.IsTemp(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		kr, err := readKeyFile(dir, network, e.Name())
		if err == nil {
			err = s.checkAddrs(dir, kr)
		}
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, errBroken):
			continue // released meanwhile, or for GC
		case err != nil:
			return nil, fmt.Errorf("listing leases of network %q: %w", network, err)
		}
		leases = append(leases, Lease{Key: kr.Key, Addrs: kr.Addrs, Created: kr.Created})
	}
	slices.SortFunc(leases, compareLeases)
	return leases, nil
}

func compareLeases(a, b Lease) int {
	for i := 0; i < len(a.Addrs) && i < len(b.Addrs); i++ {
		if c := a.Addrs[i].Addr().Compare(b.Addrs[i].Addr()); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(len(a.Addrs), len(b.Addrs)); c != 0 {
		return c
	}
	return cmp.Compare(a.Key.String(), b.Key.String())
}

// ReleaseUnheld releases network's leases whose keys held rejects (GC: no
// record holds them) and returns them. It goes on past errors and returns
// them joined.
func (s *Store) ReleaseUnheld(ctx context.Context, network string, held func(Key) bool) ([]Lease, error) {
	leases, err := s.List(network)
	errs := []error{err}
	var released []Lease
	for _, l := range leases {
		if held(l.Key) {
			continue
		}
		if err := s.Release(ctx, l.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		released = append(released, l)
	}
	return released, errors.Join(errs...)
}

// ReleaseNetwork drops every lease of network and removes its directory.
// A missing network is success.
func (s *Store) ReleaseNetwork(ctx context.Context, network string) error {
	if err := checkName("network", network); err != nil {
		return fmt.Errorf("releasing network: %w", err)
	}
	unlock, err := s.lockNetwork(ctx, network, false)
	if errors.Is(err, errNoNetwork) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasing network %q: %w", network, err)
	}
	defer unlock()

	dir := s.netDir(network)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("releasing network %q: %w", network, err)
	}
	// Everything but the lock file first, so that no one can start the
	// network anew before its old leases are gone; the lock file then, which
	// sends anyone waiting on it back to create a fresh one.
	for _, e := range entries {
		if e.Name() == lockName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("releasing network %q: %w", network, err)
		}
	}
	if err := removeIfExists(filepath.Join(dir, lockName)); err != nil {
		return fmt.Errorf("releasing network %q: removing lock file: %w", network, err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Another allocation started the network afresh: it is theirs.
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return nil
		}
		return fmt.Errorf("releasing network %q: removing directory: %w", network, err)
	}
	return nil
}

// Networks returns the names of the networks that have a directory in the store.
func (s *Store) Networks() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing networks in %s: %w", s.dir, err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && checkName("network", e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// GC repairs what crashed processes left in network's directory: temporary
// files, key files that do not describe a whole lease, and address files that
// no lease holds. Leases themselves are kept: releasing the leases of sandboxes
// that are gone is the caller's business. A missing network is success.
func (s *Store) GC(ctx context.Context, network string) error {
	if err := checkName("network", network); err != nil {
		return fmt.Errorf("collecting garbage: %w", err)
	}
	unlock, err := s.lockNetwork(ctx, network, false)
	if errors.Is(err, errNoNetwork) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("collecting garbage in network %q: %w", network, err)
	}
	defer unlock()

	dir := s.netDir(network)
	fail := func(err error) error { return fmt.Errorf("collecting garbage in network %q: %w", network, err) }
	keys, err := os.ReadDir(filepath.Join(dir, keysDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	held := make(map[netip.Addr]bool)
	for _, e := range keys {
		if !statefile.IsTemp(e.Name()) {
			kr, err := readKeyFile(dir, network, e.Name())
			if err == nil {
				err = s.checkAddrs(dir, kr)
			}
			if err == nil {
				for _, p := range kr.Addrs {
					held[p.Addr()] = true
				}
				continue
			}
			if !errors.Is(err, errBroken) && !errors.Is(err, fs.ErrNotExist) {
				return fail(err)
			}
		}
		if err := os.RemoveAll(filepath.Join(dir, keysDir, e.Name())); err != nil {
			return fail(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fail(err)
	}
	for _, e := range entries {
		name := e.Name()
		a, perr := netip.ParseAddr(name)
		switch {
		case statefile.IsTemp(name):
		case perr == nil && a.String() == name && !held[a]:
		default:
			continue
		}
		if err := ctx.Err(); err != nil {
			return fail(context.Cause(ctx))
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fail(err)
		}
	}
	return nil
}
