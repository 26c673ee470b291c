package ipam

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func v4Pool() Pool { return Pool{Subnet: pfx("10.88.0.0/24"), Gateway: addr("10.88.0.1")} }

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func key(sandbox string) Key { return Key{Network: "n1", Sandbox: sandbox, Interface: "eth0"} }

func mustAllocate(t testing.TB, s *Store, pools []Pool, k Key, static ...netip.Addr) Lease {
	t.Helper()
	l, err := s.Allocate(context.Background(), pools, k, static...)
	if err != nil {
		t.Fatalf("Allocate(%s): %v", k, err)
	}
	return l
}

// allocateAll allocates for sandboxes s0, s1, ... until the pool is exhausted
// and returns the addresses in order.
func allocateAll(t *testing.T, s *Store, p Pool) []netip.Addr {
	t.Helper()
	var got []netip.Addr
	for i := 0; ; i++ {
		l, err := s.Allocate(context.Background(), []Pool{p}, key(fmt.Sprint("s", i)))
		if errors.Is(err, ErrExhausted) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Addrs) != 1 || l.Addrs[0].Bits() != p.Subnet.Bits() {
			t.Fatalf("lease %v: want one address with prefix length %d", l.Addrs, p.Subnet.Bits())
		}
		got = append(got, l.Addrs[0].Addr())
		if i > 1<<12 {
			t.Fatal("pool never exhausted")
		}
	}
}

func addrRange(first, last string) []netip.Addr {
	var out []netip.Addr
	for a := addr(first); ; a = a.Next() {
		out = append(out, a)
		if a == addr(last) {
			return out
		}
	}
}

func TestAllocateWholePool(t *testing.T) {
	tests := []struct {
		name string
		pool Pool
		want []netip.Addr
	}{
		{"/24 without network, broadcast, gateway", v4Pool(), addrRange("10.88.0.2", "10.88.0.254")},
		{"/30", Pool{Subnet: pfx("10.0.0.4/30")}, addrRange("10.0.0.5", "10.0.0.6")},
		{"/30 with gateway", Pool{Subnet: pfx("10.0.0.4/30"), Gateway: addr("10.0.0.5")}, addrRange("10.0.0.6", "10.0.0.6")},
		{"/31 both usable", Pool{Subnet: pfx("10.0.0.4/31")}, addrRange("10.0.0.4", "10.0.0.5")},
		{"/32 the one", Pool{Subnet: pfx("10.0.0.9/32")}, addrRange("10.0.0.9", "10.0.0.9")},
		{"range", Pool{Subnet: pfx("10.88.0.0/24"), Range: pfx("10.88.0.240/28"), Gateway: addr("10.88.0.1")},
			addrRange("10.88.0.240", "10.88.0.254")},
		{"range inside larger subnet keeps its .0", Pool{Subnet: pfx("10.88.0.0/16"), Range: pfx("10.88.1.0/29")},
			addrRange("10.88.1.0", "10.88.1.7")},
		{"range starting at the network address", Pool{Subnet: pfx("10.88.0.0/24"), Range: pfx("10.88.0.0/29")},
			addrRange("10.88.0.1", "10.88.0.7")},
		{"reserved", Pool{Subnet: pfx("10.0.0.0/29"), Gateway: addr("10.0.0.1"), Reserved: []netip.Addr{addr("10.0.0.2"), addr("10.0.0.5")}},
			[]netip.Addr{addr("10.0.0.3"), addr("10.0.0.4"), addr("10.0.0.6")}},
		{"v6 /125 skips the anycast address", Pool{Subnet: pfx("fd00::/125")}, addrRange("fd00::1", "fd00::7")},
		{"v6 /127 both usable", Pool{Subnet: pfx("fd00::/127")}, addrRange("fd00::", "fd00::1")},
		{"v6 /128", Pool{Subnet: pfx("fd00::5/128")}, addrRange("fd00::5", "fd00::5")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := allocateAll(t, newStore(t), tt.pool)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("allocated %v\nwant      %v", got, tt.want)
			}
		})
	}
}

func TestExhaustedThenRelease(t *testing.T) {
	s := newStore(t)
	p := Pool{Subnet: pfx("10.88.0.0/29"), Gateway: addr("10.88.0.1")}
	got := allocateAll(t, s, p) // s0..s4 hold .2 .. .6
	if len(got) != 5 {
		t.Fatalf("got %v, want 5 addresses", got)
	}
	_, err := s.Allocate(context.Background(), []Pool{p}, key("late"))
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate on a full pool: %v, want ErrExhausted", err)
	}
	if want := `allocating address in 10.88.0.0/29 for network "n1": pool exhausted`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if _, err := s.Get(key("late")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a failed Allocate: %v, want ErrNotFound", err)
	}
	if err := s.Release(context.Background(), key("s2")); err != nil { // .4
		t.Fatal(err)
	}
	l := mustAllocate(t, s, []Pool{p}, key("late"))
	if l.Addrs[0] != pfx("10.88.0.4/29") {
		t.Errorf("after release got %v, want 10.88.0.4/29", l.Addrs[0])
	}
}

func TestAllocateIsSequentialAndDoesNotReuseAtOnce(t *testing.T) {
	s := newStore(t)
	pools := []Pool{v4Pool()}
	a := mustAllocate(t, s, pools, key("a"))
	b := mustAllocate(t, s, pools, key("b"))
	if a.Addrs[0] != pfx("10.88.0.2/24") || b.Addrs[0] != pfx("10.88.0.3/24") {
		t.Fatalf("got %v, %v; want 10.88.0.2/24, 10.88.0.3/24", a.Addrs, b.Addrs)
	}
	if err := s.Release(context.Background(), key("a")); err != nil {
		t.Fatal(err)
	}
	c := mustAllocate(t, s, pools, key("c"))
	if c.Addrs[0] != pfx("10.88.0.4/24") {
		t.Errorf("after releasing .2 got %v, want 10.88.0.4/24 (no immediate reuse)", c.Addrs[0])
	}
}

func TestAllocateWrapsAround(t *testing.T) {
	s := newStore(t)
	p := Pool{Subnet: pfx("10.0.0.0/29"), Gateway: addr("10.0.0.1")}
	allocateAll(t, s, p)                      // .2 .. .6
	for _, sb := range []string{"s3", "s0"} { // .5, .2
		if err := s.Release(context.Background(), key(sb)); err != nil {
			t.Fatal(err)
		}
	}
	// The cursor is at .6: the walk wraps to .2 before it comes back to .5.
	for i, want := range []string{"10.0.0.2/29", "10.0.0.5/29"} {
		l := mustAllocate(t, s, []Pool{p}, key(fmt.Sprint("new", i)))
		if l.Addrs[0] != pfx(want) {
			t.Errorf("got %v, want %s", l.Addrs[0], want)
		}
	}
}

func TestStatic(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	p := Pool{Subnet: pfx("10.88.0.0/24"), Range: pfx("10.88.0.0/25"), Gateway: addr("10.88.0.1"), Reserved: []netip.Addr{addr("10.88.0.9")}}
	pools := []Pool{p}

	l := mustAllocate(t, s, pools, key("a"), addr("10.88.0.50"))
	if l.Addrs[0] != pfx("10.88.0.50/24") {
		t.Fatalf("static: got %v, want 10.88.0.50/24", l.Addrs)
	}
	// A static address does not move the cursor.
	if l := mustAllocate(t, s, pools, key("b")); l.Addrs[0] != pfx("10.88.0.2/24") {
		t.Errorf("dynamic after static: got %v, want 10.88.0.2/24", l.Addrs)
	}
	// A zero static address means "any".
	if l := mustAllocate(t, s, pools, key("c"), netip.Addr{}); l.Addrs[0] != pfx("10.88.0.3/24") {
		t.Errorf("zero static: got %v, want 10.88.0.3/24", l.Addrs)
	}

	for _, tt := range []struct {
		addr, want string
	}{
		{"10.88.0.200", "is outside range 10.88.0.0/25"},
		{"10.89.0.5", "is outside range"},
		{"fd00::5", "is outside range"},
		{"10.88.0.1", "is the gateway"},
		{"10.88.0.0", "is the subnet's network address"},
		{"10.88.0.9", "is reserved"},
	} {
		_, err := s.Allocate(ctx, pools, key("x"), addr(tt.addr))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("static %s: %v, want ErrInvalid saying %q", tt.addr, err, tt.want)
		}
	}
	_, err := s.Allocate(ctx, []Pool{v4Pool()}, key("x"), addr("10.88.0.255"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "broadcast") {
		t.Errorf("static broadcast: %v, want ErrInvalid", err)
	}

	_, err = s.Allocate(ctx, pools, key("x"), addr("10.88.0.50"))
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "held by n1/a/eth0") {
		t.Errorf("static taken: %v, want ErrInUse naming the holder", err)
	}
	_, err = s.Allocate(ctx, pools, key("x"), addr("10.88.0.5"), addr("10.88.0.6"))
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("more static addresses than pools: %v, want ErrInvalid", err)
	}
	if _, err := s.Get(key("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed allocations left a lease: %v", err)
	}
}

func TestDualStack(t *testing.T) {
	s := newStore(t)
	pools := []Pool{v4Pool(), {Subnet: pfx("fd00:88::/64"), Gateway: addr("fd00:88::1")}}
	l := mustAllocate(t, s, pools, key("a"))
	want := []netip.Prefix{pfx("10.88.0.2/24"), pfx("fd00:88::2/64")}
	if !reflect.DeepEqual(l.Addrs, want) {
		t.Fatalf("got %v, want %v", l.Addrs, want)
	}
	// Order follows the pools.
	l = mustAllocate(t, s, []Pool{pools[1], pools[0]}, key("b"))
	want = []netip.Prefix{pfx("fd00:88::3/64"), pfx("10.88.0.3/24")}
	if !reflect.DeepEqual(l.Addrs, want) {
		t.Fatalf("got %v, want %v", l.Addrs, want)
	}
	// Static on the second pool only.
	l = mustAllocate(t, s, pools, key("c"), netip.Addr{}, addr("fd00:88::abcd"))
	want = []netip.Prefix{pfx("10.88.0.4/24"), pfx("fd00:88::abcd/64")}
	if !reflect.DeepEqual(l.Addrs, want) {
		t.Fatalf("got %v, want %v", l.Addrs, want)
	}
	// A failure in the second pool leaves nothing from the first.
	_, err := s.Allocate(context.Background(), pools, key("d"), netip.Addr{}, addr("fd00:88::abcd"))
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("got %v, want ErrInUse", err)
	}
	if l := mustAllocate(t, s, pools[:1], key("e")); l.Addrs[0] != pfx("10.88.0.5/24") {
		t.Errorf("after a rolled-back allocation got %v, want 10.88.0.5/24", l.Addrs)
	}
	if _, err := s.Allocate(context.Background(), []Pool{v4Pool(), v4Pool()}, key("f")); !errors.Is(err, ErrInvalid) {
		t.Errorf("two IPv4 pools: %v, want ErrInvalid", err)
	}
}

func TestLargeV6(t *testing.T) {
	s := newStore(t)
	p := Pool{Subnet: pfx("fd00:88::/64")}
	seen := map[netip.Prefix]bool{}
	for i := range 100 {
		l := mustAllocate(t, s, []Pool{p}, key(fmt.Sprint("s", i)))
		if seen[l.Addrs[0]] {
			t.Fatalf("%v handed out twice", l.Addrs[0])
		}
		seen[l.Addrs[0]] = true
	}
	if !seen[pfx("fd00:88::1/64")] || seen[pfx("fd00:88::/64")] {
		t.Errorf("want ::1 handed out and the anycast address not: %v", seen)
	}
	// The cursor at the last address wraps to the start of a /64 range.
	top := addr("fd00:88::ffff:ffff:ffff:ffff")
	mustAllocate(t, s, []Pool{p}, key("top"), top)
	if err := replaceFile(cursorPath(s.netDir("n1"), top), []byte(top.String()), false); err != nil {
		t.Fatal(err)
	}
	if l := mustAllocate(t, s, []Pool{p}, key("next")); l.Addrs[0] != pfx("fd00:88::65/64") {
		t.Errorf("after the top of the /64 got %v, want fd00:88::65/64", l.Addrs[0])
	}
}

func TestAllocateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	pools := []Pool{v4Pool()}
	first := mustAllocate(t, s, pools, key("a"))
	again := mustAllocate(t, s, pools, key("a"))
	if !reflect.DeepEqual(first, again) {
		t.Errorf("second Allocate = %+v, want %+v", again, first)
	}
	same := mustAllocate(t, s, pools, key("a"), first.Addrs[0].Addr())
	if !reflect.DeepEqual(first, same) {
		t.Errorf("Allocate with the held address as static = %+v, want %+v", same, first)
	}
	got, err := s.Get(key("a"))
	if err != nil || !reflect.DeepEqual(got, first) {
		t.Errorf("Get = %+v, %v; want %+v", got, err, first)
	}
	if _, err := s.Allocate(ctx, pools, key("a"), addr("10.88.0.99")); !errors.Is(err, ErrInUse) {
		t.Errorf("Allocate with another static address: %v, want ErrInUse", err)
	}
	dual := []Pool{v4Pool(), {Subnet: pfx("fd00::/64")}}
	if _, err := s.Allocate(ctx, dual, key("a")); !errors.Is(err, ErrInUse) {
		t.Errorf("Allocate with an extra pool: %v, want ErrInUse", err)
	}
	if _, err := s.Allocate(ctx, []Pool{{Subnet: pfx("10.88.0.0/24"), Range: pfx("10.88.0.128/25")}}, key("a")); !errors.Is(err, ErrInUse) {
		t.Errorf("Allocate with a range that excludes the lease: %v, want ErrInUse", err)
	}
	if l := mustAllocate(t, s, pools, key("b")); l.Addrs[0] != pfx("10.88.0.3/24") {
		t.Errorf("idempotent calls moved the cursor: got %v", l.Addrs)
	}
}

func TestRelease(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustAllocate(t, s, []Pool{v4Pool()}, key("a"))
	for i := range 2 {
		if err := s.Release(ctx, key("a")); err != nil {
			t.Fatalf("Release #%d: %v", i+1, err)
		}
	}
	if err := s.Release(ctx, key("never")); err != nil {
		t.Errorf("Release of an unknown key: %v", err)
	}
	if err := s.Release(ctx, Key{"no-such-net", "a", "eth0"}); err != nil {
		t.Errorf("Release in an unknown network: %v", err)
	}
	if _, err := os.Stat(s.netDir("no-such-net")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Release created the network directory: %v", err)
	}
	_, err := s.Get(key("a"))
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Release: %v, want ErrNotFound", err)
	}
	if want := "getting lease of n1/a/eth0: not found"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if addrs := addrFiles(t, s.netDir("n1")); len(addrs) != 0 {
		t.Errorf("address files left: %v", addrs)
	}
}

func TestSecondStoreSeesLeases(t *testing.T) {
	s1 := newStore(t)
	pools := []Pool{v4Pool()}
	a := mustAllocate(t, s1, pools, key("a"))
	s2, err := Open(s1.Dir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(key("a"))
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("Get from a second store = %+v, %v; want %+v", got, err, a)
	}
	if b := mustAllocate(t, s2, pools, key("b")); b.Addrs[0] != pfx("10.88.0.3/24") {
		t.Errorf("second store allocated %v, want 10.88.0.3/24", b.Addrs)
	}
	leases, err := s1.List("n1")
	if err != nil || len(leases) != 2 {
		t.Fatalf("List from the first store = %v, %v; want 2 leases", leases, err)
	}
	nets, err := s2.Networks()
	if err != nil || !reflect.DeepEqual(nets, []string{"n1"}) {
		t.Errorf("Networks() = %v, %v; want [n1]", nets, err)
	}
}

func TestList(t *testing.T) {
	s := newStore(t)
	pools := []Pool{v4Pool()}
	for _, a := range []string{"10.88.0.30", "10.88.0.4", "10.88.0.200", "10.88.0.10"} {
		mustAllocate(t, s, pools, key("s"+a), addr(a))
	}
	mustAllocate(t, s, pools, Key{"other", "x", "eth0"})
	leases, err := s.List("n1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range leases {
		got = append(got, l.Addrs[0].Addr().String()+"="+l.Sandbox)
	}
	want := []string{"10.88.0.4=s10.88.0.4", "10.88.0.10=s10.88.0.10", "10.88.0.30=s10.88.0.30", "10.88.0.200=s10.88.0.200"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if leases, err := s.List("empty"); err != nil || len(leases) != 0 {
		t.Errorf("List of an unknown network = %v, %v; want none", leases, err)
	}
}

func TestReleaseNetwork(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	pools := []Pool{v4Pool()}
	for i := range 5 {
		mustAllocate(t, s, pools, key(fmt.Sprint("s", i)))
	}
	keep := mustAllocate(t, s, pools, Key{"n2", "a", "eth0"})
	for i := range 2 {
		if err := s.ReleaseNetwork(ctx, "n1"); err != nil {
			t.Fatalf("ReleaseNetwork #%d: %v", i+1, err)
		}
	}
	if _, err := os.Lstat(s.netDir("n1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("network directory left: %v", err)
	}
	if leases, err := s.List("n1"); err != nil || len(leases) != 0 {
		t.Errorf("List after ReleaseNetwork = %v, %v", leases, err)
	}
	if got, err := s.Get(Key{"n2", "a", "eth0"}); err != nil || !reflect.DeepEqual(got, keep) {
		t.Errorf("another network's lease: %+v, %v", got, err)
	}
	if l := mustAllocate(t, s, pools, key("again")); l.Addrs[0] != pfx("10.88.0.2/24") {
		t.Errorf("after ReleaseNetwork got %v, want a fresh start at 10.88.0.2/24", l.Addrs)
	}
}

func TestInvalidNames(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	pools := []Pool{v4Pool()}
	for _, name := range []string{"", ".", "..", "a/b", "../x", "a\x00b", strings.Repeat("x", 256)} {
		for _, k := range []Key{{name, "sb", "eth0"}, {"n1", name, "eth0"}, {"n1", "sb", name}} {
			if _, err := s.Allocate(ctx, pools, k); !errors.Is(err, ErrInvalid) {
				t.Errorf("Allocate(%q): %v, want ErrInvalid", k, err)
			}
			if _, err := s.Get(k); !errors.Is(err, ErrInvalid) {
				t.Errorf("Get(%q): %v, want ErrInvalid", k, err)
			}
			if err := s.Release(ctx, k); !errors.Is(err, ErrInvalid) {
				t.Errorf("Release(%q): %v, want ErrInvalid", k, err)
			}
		}
		if _, err := s.List(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("List(%q): %v, want ErrInvalid", name, err)
		}
		if err := s.ReleaseNetwork(ctx, name); !errors.Is(err, ErrInvalid) {
			t.Errorf("ReleaseNetwork(%q): %v, want ErrInvalid", name, err)
		}
	}
	// Dots inside a name are fine, and so is the longest name.
	mustAllocate(t, s, pools, Key{"a..b", strings.Repeat("x", 255), "eth0.1"})
	if _, err := s.Allocate(ctx, nil, key("a")); !errors.Is(err, ErrInvalid) {
		t.Errorf("no pools: %v, want ErrInvalid", err)
	}
	if _, err := s.Allocate(ctx, []Pool{{Subnet: pfx("10.88.0.1/24")}}, key("a")); !errors.Is(err, ErrInvalid) {
		t.Errorf("unmasked pool: %v, want ErrInvalid", err)
	}
	if _, err := Open(""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(\"\"): %v, want ErrInvalid", err)
	}
}

func TestPermissions(t *testing.T) {
	s := newStore(t)
	mustAllocate(t, s, []Pool{v4Pool()}, key("a"))
	err := filepath.WalkDir(s.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = fs.ModeDir | 0o700
		}
		if path != s.Dir() && fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestContext(t *testing.T) {
	s := newStore(t)
	pools := []Pool{v4Pool()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Allocate(ctx, pools, key("a")); !errors.Is(err, context.Canceled) {
		t.Errorf("Allocate with a cancelled ctx: %v", err)
	}

	// Another process holds the network's lock: Allocate waits, until ctx ends.
	mustAllocate(t, s, pools, key("a"))
	f, err := os.Open(filepath.Join(s.netDir("n1"), lockName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Allocate(ctx, pools, key("b")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Allocate while the lock is held elsewhere: %v, want DeadlineExceeded", err)
	}
	// Reads take no lock.
	if _, err := s.Get(key("a")); err != nil {
		t.Errorf("Get while the lock is held elsewhere: %v", err)
	}
	done := make(chan error)
	go func() {
		_, err := s.Allocate(context.Background(), pools, key("b"))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if err := <-done; err != nil {
		t.Errorf("Allocate after the lock was let go: %v", err)
	}
}

// addrFiles returns the names of the address files in a network's directory.
func addrFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestConcurrentGoroutines(t *testing.T) {
	s := newStore(t)
	pools := []Pool{v4Pool()}
	const n = 50
	addrs := make([]netip.Prefix, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			l, err := s.Allocate(context.Background(), pools, key(fmt.Sprint("g", i)))
			if err != nil {
				t.Error(err)
				return
			}
			addrs[i] = l.Addrs[0]
		})
	}
	wg.Wait()
	seen := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Errorf("%v handed out twice", a)
		}
		seen[a] = true
	}
	if leases, err := s.List("n1"); err != nil || len(leases) != n {
		t.Errorf("List: %d leases, %v; want %d", len(leases), err, n)
	}
}

// TestConcurrentReleaseNetwork races allocations in two Stores (so only flock
// orders them) against ReleaseNetwork, which unlinks the lock file: nothing
// may fail, and whatever is left must be whole leases.
func TestConcurrentReleaseNetwork(t *testing.T) {
	s1 := newStore(t)
	s2, err := Open(s1.Dir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pools := []Pool{{Subnet: pfx("10.0.0.0/16")}}
	var wg sync.WaitGroup
	for i := range 8 {
		s := []*Store{s1, s2}[i%2]
		wg.Go(func() {
			for j := range 30 {
				k := key(fmt.Sprintf("g%d-%d", i, j))
				if _, err := s.Allocate(ctx, pools, k); err != nil {
					t.Error(err)
				}
				if j%3 == 0 {
					if err := s.Release(ctx, k); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if err := s2.ReleaseNetwork(ctx, "n1"); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	leases, err := s1.List("n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.GC(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	after, err := s1.List("n1")
	if err != nil || !reflect.DeepEqual(after, leases) {
		t.Fatalf("GC changed the leases: %d before, %d after (%v)", len(leases), len(after), err)
	}
	if files := addrFiles(t, s1.netDir("n1")); len(files) != len(leases) {
		t.Errorf("%d address files for %d leases", len(files), len(leases))
	}
}
