package sandnet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/dnsrun"
	"github.com/sandnet/sandnet/internal/state"
	"github.com/sandnet/sandnet/ipam"
	"github.com/sandnet/sandnet/nat"
	"github.com/sandnet/sandnet/netns"
)

// DefaultStateDir is where a Host over the caller's own namespace keeps its
// state. It is on tmpfs, so leases vanish with the namespaces at reboot.
const DefaultStateDir = "/run/sandnet"

// HostConfig says which namespace plays the host and where state lives.
type HostConfig struct {
	// NetNS is the namespace playing the host: "" for the caller's own, a
	// name under /run/netns, a path, or "pid:PID".
	NetNS string
	// StateDir holds networks, endpoints and leases. Default: /run/sandnet for
	// the caller's namespace, /run/sandnet/netns/NAME for a named one. Two
	// Hosts over different namespaces must not share a state dir.
	StateDir string
	// Logger receives debug and warning messages; default: discard.
	Logger *slog.Logger

	// DNS says how the embedded name server of bridge networks runs;
	// default DNSHelper.
	DNS DNSMode
	// ResolvConf and ResolvedConf are where the host's resolver
	// configuration is read: default /etc/resolv.conf and systemd-resolved's
	// /run/systemd/resolve/resolv.conf (the real servers behind a 127.0.0.53
	// stub). Sandboxes get their search domains and options, and their
	// servers when no embedded server answers for them.
	ResolvConf   string
	ResolvedConf string
	// DNSUpstreams, when set, are the servers the embedded name server
	// forwards to, instead of the host's.
	DNSUpstreams []netip.AddrPort

	// Firewall installs the NAT, forwarding and published-port rules, acting
	// in NetNS; nil means the backend FirewallBackend names.
	Firewall nat.Backend
	// FirewallBackend names the backend when Firewall is nil: "iptables",
	// "nftables", or "" (auto): nftables where the host namespace has a
	// working nf_tables (probed once, when the Host is made), iptables
	// otherwise. See nat.New.
	FirewallBackend string
}

// Host is the host side of sandnet: the namespace that holds bridges and
// firewall rules, and the state directory that records what was done.
// A Host is safe for concurrent use.
type Host struct {
	ns    *netns.NS
	dir   string
	st    *stateStore
	log   *slog.Logger
	ipam  *ipam.Store
	owned bool // ns was opened by NewHost
	fw    nat.Backend
	fwOwn bool // fw was made by newHost: Close closes it

	mu   sync.Mutex
	nets map[string]*netState

	// stepHook, when set (by tests), runs before each named step of Attach
	// and can make it fail.
	stepHook func(Step) error

	dnsMode  DNSMode
	dnsFiles dns.HostFiles
	dns      *dnsrun.Manager // the name-server runner of the state dir

	// freeing counts the veths that Detach has taken out of the host and
	// the kernel is still freeing (see removeVeth): Close waits for them.
	freeing sync.WaitGroup
}

// NewHost opens a Host as configured.
func NewHost(ctx context.Context, c HostConfig) (*Host, error) {
	var (
		ns  *netns.NS
		err error
	)
	if c.NetNS == "" {
		ns, err = netns.Current()
	} else {
		ns, err = netns.Open(c.NetNS)
	}
	if err != nil {
		return nil, fmt.Errorf("opening host namespace: %w", err)
	}
	h, err := newHost(ns, c)
	if err != nil {
		ns.Close()
		return nil, err
	}
	h.owned = true
	return h, nil
}

// NewHostNS is NewHost over a namespace the caller has open already; the
// caller keeps ownership of ns and closes it after the Host.
func NewHostNS(ns *netns.NS, c HostConfig) (*Host, error) {
	return newHost(ns, c)
}

func newHost(ns *netns.NS, c HostConfig) (*Host, error) {
	dir := c.StateDir
	if dir == "" {
		dir = DefaultStateDir
		if ns.Name() != "" {
			dir = filepath.Join(DefaultStateDir, "netns", ns.Name())
		}
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st, err := state.Open[Network, Endpoint](dir)
	if err != nil {
		return nil, err
	}
	if err := state.CheckHostNS(dir, ns, log); err != nil {
		return nil, err
	}
	store, err := ipam.Open(filepath.Join(dir, "ipam"))
	if err != nil {
		return nil, err
	}
	if err := checkDNSConfig(c); err != nil {
		return nil, err
	}
	fw, fwOwn := c.Firewall, c.Firewall == nil
	if fw == nil {
		if fw, err = nat.New(ns, c.FirewallBackend); err != nil {
			return nil, err
		}
	}
	files := dns.HostFiles{ResolvConf: c.ResolvConf, ResolvedConf: c.ResolvedConf}
	runner := dnsrun.New(dnsrun.Config{
		Dir: dir, NS: ns, Logger: log, Files: files, Upstreams: c.DNSUpstreams, InProcess: c.DNS == DNSInProcess,
	}, records(st))
	return &Host{
		ns: ns, dir: dir, st: st, log: log, ipam: store, fw: fw, fwOwn: fwOwn, nets: map[string]*netState{},
		dnsMode: c.DNS, dnsFiles: files, dns: runner,
	}, nil
}

// NS is the namespace playing the host.
func (h *Host) NS() *netns.NS { return h.ns }

// StateDir is the directory holding the Host's records and leases.
func (h *Host) StateDir() string { return h.dir }

// Close waits until the kernel has freed the veths Detach deleted, releases
// the Host's namespace handle if NewHost opened it and stops its in-process
// name server (DNSInProcess). Networks and endpoints stay:
// they live in the kernel and the state dir.
func (h *Host) Close() error {
	h.freeing.Wait()
	h.dns.Close()
	if c, ok := h.fw.(interface{ Close() error }); ok && h.fwOwn {
		c.Close()
	}
	if h.owned {
		return h.ns.Close()
	}
	return nil
}

var (
	defaultOnce sync.Once
	defaultHost *Host
	defaultErr  error
)

// theDefaultHost is the Host over the caller's namespace and /run/sandnet
// that the top-level Attach and Detach use.
func theDefaultHost(ctx context.Context) (*Host, error) {
	defaultOnce.Do(func() { defaultHost, defaultErr = NewHost(ctx, HostConfig{}) })
	return defaultHost, defaultErr
}

// Attach attaches with the Host over the caller's namespace and /run/sandnet.
func Attach(ctx context.Context, sandbox string, n Network, opts AttachOptions) (*Endpoint, error) {
	h, err := theDefaultHost(ctx)
	if err != nil {
		return nil, err
	}
	return h.Attach(ctx, sandbox, n, opts)
}

// Detach detaches with the Host over the caller's namespace and /run/sandnet.
func Detach(ctx context.Context, ep *Endpoint) error {
	h, err := theDefaultHost(ctx)
	if err != nil {
		return err
	}
	return h.Detach(ctx, ep)
}
