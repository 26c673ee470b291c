package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/internal/errkind"
)

// Sentinel errors, shared with the rest of sandnet.
var (
	ErrInvalid  = errkind.Invalid
	ErrExists   = errkind.Exists
	ErrNotFound = errkind.NotFound
)

// Dir is where named namespaces are pinned, as iproute2 does.
const Dir = "/run/netns"

// nsGetNSType is the NS_GET_NSTYPE ioctl (linux/nsfs.h).
const nsGetNSType = 0xb703

// NS is an open network namespace.
type NS struct {
	f    *os.File
	path string
	name string // set when the namespace is pinned under Dir
	ino  uint64
	dev  uint64

	once     sync.Once
	nl       *netlink.Handle
	nlErr    error
	rmu      sync.Mutex
	rnl      *netlink.Handle // route-only handle, see RouteNetlink
	isClosed bool
	closed   sync.Once

	rsock     *nl.SocketHandle // raw rtnetlink socket, see RouteSocket; under rmu
	smu       sync.Mutex
	sysctls   map[string]*os.File // open sysctl files, see Sysctl
	sysClosed bool
}

// Open opens a namespace from a spec as users write it: "pid:PID", a path
// (anything containing '/'), or a name under /run/netns.
func Open(spec string) (*NS, error) {
	switch {
	case strings.HasPrefix(spec, "pid:"):
		pid, err := strconv.Atoi(strings.TrimPrefix(spec, "pid:"))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("opening namespace %q: pid must be a positive number: %w", spec, ErrInvalid)
		}
		return OpenPID(pid)
	case strings.Contains(spec, "/"):
		return OpenPath(spec)
	default:
		return OpenName(spec)
	}
}

// OpenName opens the namespace pinned as /run/netns/NAME.
func OpenName(name string) (*NS, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	ns, err := OpenPath(filepath.Join(Dir, name))
	if err != nil {
		return nil, err
	}
	ns.name = name
	return ns, nil
}

// OpenPID opens the network namespace of process pid (/proc/PID/ns/net), the
// route of `docker inspect -f '{{.State.Pid}}'` followed by nsenter -t PID -n.
func OpenPID(pid int) (*NS, error) {
	return OpenPath(fmt.Sprintf("/proc/%d/ns/net", pid))
}

// Current opens the network namespace of the calling process (its main
// thread), the one a program runs in when nobody moved it.
func Current() (*NS, error) {
	return OpenPath("/proc/self/ns/net")
}

// OpenPath opens a namespace file and checks that it is a network namespace.
func OpenPath(path string) (*NS, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opening namespace %s: %w", path, ErrNotFound)
		}
		return nil, fmt.Errorf("opening namespace %s: %w", path, err)
	}
	typ, err := unix.IoctlRetInt(int(f.Fd()), nsGetNSType)
	if err != nil || typ != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("opening namespace %s: not a network namespace: %w", path, ErrInvalid)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("opening namespace %s: %w", path, err)
	}
	ns := &NS{f: f, path: path, ino: st.Ino, dev: st.Dev}
	if dir, base := filepath.Split(path); filepath.Clean(dir) == Dir {
		ns.name = base
	}
	return ns, nil
}

// Fd is the namespace's file descriptor, valid until Close.
func (n *NS) Fd() int { return int(n.f.Fd()) }

// Path is the file the namespace was opened from.
func (n *NS) Path() string { return n.path }

// Name is the namespace's name under /run/netns, or "" if it has none.
func (n *NS) Name() string { return n.name }

// Inode is the number that identifies the namespace: what
// `ls -l /proc/PID/ns/net` shows as net:[INODE].
func (n *NS) Inode() uint64 { return n.ino }

// Equal reports whether n and o are the same namespace.
func (n *NS) Equal(o *NS) bool { return n.ino == o.ino && n.dev == o.dev }

// String names the namespace for messages: its name, else its path.
func (n *NS) String() string {
	if n.name != "" {
		return n.name
	}
	return n.path
}

// Netlink returns the netlink handle bound to the namespace, created on first
// use and shared by every caller; it is closed by Close. It speaks rtnetlink
// and netfilter (conntrack), the families sandnet uses: each socket costs
// entering the namespace, which a short-lived process (the CNI plugin) pays
// every time.
func (n *NS) Netlink() (*netlink.Handle, error) {
	n.once.Do(func() {
		n.nl, n.nlErr = netlink.NewHandleAt(vnetns.NsHandle(n.Fd()), unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
		if n.nlErr != nil {
			n.nlErr = fmt.Errorf("opening netlink in namespace %s: %w", n, n.nlErr)
		}
	})
	return n.nl, n.nlErr
}

// RouteNetlink returns a netlink handle bound to the namespace for rtnetlink
// only (links, addresses, routes, neighbours): a lighter handle than
// Netlink's, with a single socket, about a third of the cost to open. Attach uses it on the sandbox side, where a handle is
// opened once per namespace and used for a few requests. It is closed by Close.
func (n *NS) RouteNetlink() (*netlink.Handle, error) {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	if n.rnl != nil {
		return n.rnl, nil
	}
	if n.isClosed {
		return nil, fmt.Errorf("opening netlink in namespace %s: namespace closed", n)
	}
	h, err := netlink.NewHandleAt(vnetns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in namespace %s: %w", n, err)
	}
	n.rnl = h
	return h, nil
}

// RouteSocket returns a raw rtnetlink socket bound to the namespace, for
// requests that the netlink package's Handle makes in several messages and
// the kernel takes in one (a veth pair with its master and settings): give
// it to nl.NetlinkRequest.Sockets. It is opened once per NS, shared
// (requests on it take turns) and closed by Close.
func (n *NS) RouteSocket() (*nl.SocketHandle, error) {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	if n.rsock != nil {
		return n.rsock, nil
	}
	if n.isClosed {
		return nil, fmt.Errorf("opening netlink in namespace %s: namespace closed", n)
	}
	s, err := n.openRouteSocket()
	if err != nil {
		return nil, err
	}
	n.rsock = s
	return n.rsock, nil
}

// OwnRouteSocket returns a new raw rtnetlink socket bound to the
// namespace, for the caller alone, who closes it: RouteSocket's kind for
// hand-made requests, unshared for the reason OwnNetlink gives.
func (n *NS) OwnRouteSocket() (*nl.SocketHandle, error) {
	return n.openRouteSocket()
}

func (n *NS) openRouteSocket() (*nl.SocketHandle, error) {
	var s *nl.NetlinkSocket
	err := n.Do(func() (err error) {
		// Made on Do's thread, inside n: bound to n for good.
		s, err = nl.GetNetlinkSocketAt(vnetns.None(), vnetns.None(), unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening netlink in namespace %s: %w", n, err)
	}
	return &nl.SocketHandle{Socket: s}, nil
}

// OwnNetlink returns a new rtnetlink handle bound to the namespace, for the
// caller alone, who closes it. A shared handle serves one request at a
// time; a request that keeps its socket long (deleting a link waits about
// 16 ms for the kernel, most of it after the kernel has let go of its own
// lock) would hold up every other caller of the shared handle.
func (n *NS) OwnNetlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in namespace %s: %w", n, err)
	}
	return h, nil
}

// Close releases the namespace (and its netlink handle). The namespace itself
// lives on while anything else holds it (a process, a bind mount).
func (n *NS) Close() error {
	var err error
	n.closed.Do(func() {
		n.once.Do(func() { n.nlErr = errors.New("namespace closed") })
		if n.nl != nil {
			n.nl.Close()
		}
		n.rmu.Lock()
		n.isClosed = true
		if n.rnl != nil {
			n.rnl.Close()
		}
		if n.rsock != nil {
			n.rsock.Close()
		}
		n.rmu.Unlock()
		n.smu.Lock()
		for _, f := range n.sysctls {
			f.Close()
		}
		n.sysctls, n.sysClosed = nil, true
		n.smu.Unlock()
		err = n.f.Close()
	})
	return err
}

// Alive reports whether the namespace at path still exists and is the one
// with the given inode.
func Alive(path string, inode uint64) bool {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false
	}
	return inode == 0 || st.Ino == inode
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return fmt.Errorf("namespace name %q: must be a non-empty file name: %w", name, ErrInvalid)
	}
	return nil
}
