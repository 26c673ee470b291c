package nettest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/netns"
)

// Sandbox is one namespace of a lab, attached to zero or more networks.
// Its sockets are made inside its namespace and are usable from any
// goroutine afterwards.
type Sandbox struct {
	// Name is the sandbox's name in the lab (and its SandboxID and hostname).
	Name string
	// NS is the sandbox's namespace, "snt-LABID-NAME".
	NS *netns.NS

	lab *Lab
	mu  sync.Mutex
	eps []*sandnet.Endpoint
}

// Lab returns the lab the sandbox is in.
func (s *Sandbox) Lab() *Lab { return s.lab }

// String is the sandbox's name.
func (s *Sandbox) String() string { return s.Name }

// Attach attaches the sandbox to one more network (Lab.Sandbox does it for
// the first) and returns the endpoint.
func (s *Sandbox) Attach(n sandnet.Network, opts ...sandnet.AttachOptions) *sandnet.Endpoint {
	l := s.lab
	l.helper()
	var o sandnet.AttachOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.SandboxID == "" {
		o.SandboxID = s.Name
	}
	if o.Hostname == "" {
		o.Hostname = s.Name
	}
	if o.IfName == "" && len(s.endpoints()) > 0 {
		o.IfName = fmt.Sprintf("eth%d", len(s.endpoints()))
	}
	ep, err := l.Host.AttachNS(l.ctx, s.NS, n, o)
	if err != nil {
		l.fatalf("attaching sandbox %q to network %q: %v", s.Name, n.Name, err)
		return nil
	}
	l.mu.Lock()
	if !slices.Contains(l.networks, ep.Network) {
		l.networks = append(l.networks, ep.Network)
	}
	l.mu.Unlock()
	s.mu.Lock()
	s.eps = append(s.eps, ep)
	s.mu.Unlock()
	return ep
}

// Endpoints returns the sandbox's endpoints, in the order they were attached.
func (s *Sandbox) Endpoints() []*sandnet.Endpoint { return s.endpoints() }

func (s *Sandbox) endpoints() []*sandnet.Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.eps)
}

// Endpoint returns the sandbox's endpoint on the network called network, or nil.
func (s *Sandbox) Endpoint(network string) *sandnet.Endpoint {
	for _, ep := range s.endpoints() {
		if ep.Network == network {
			return ep
		}
	}
	return nil
}

// Addr is the sandbox's first IPv4 address (else its first IPv6 address),
// or the zero Addr when it has none.
func (s *Sandbox) Addr() netip.Addr {
	var v6 netip.Addr
	for _, ep := range s.endpoints() {
		if a := ep.Addr(false); a.IsValid() {
			return a
		}
		if a := ep.Addr(true); a.IsValid() && !v6.IsValid() {
			v6 = a
		}
	}
	return v6
}

// Run runs fn on a thread inside the sandbox's namespace (netns.Do): fn must
// not start goroutines that expect to be inside too.
func (s *Sandbox) Run(fn func() error) error { return s.NS.Do(fn) }

// Command returns a command that runs name inside the sandbox's namespace
// (like "ip netns exec"; it uses nsenter).
func (s *Sandbox) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return s.NS.Command(ctx, name, args...)
}

// Listen is net.Listen inside the sandbox. The lab closes the listener
// when it is removed.
func (s *Sandbox) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := s.NS.Do(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s %s in sandbox %s: %w", network, address, s.Name, err)
	}
	s.lab.track(ln)
	return ln, nil
}

// ListenPacket is net.ListenPacket inside the sandbox. The lab closes the
// connection when it is removed.
func (s *Sandbox) ListenPacket(network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := s.NS.Do(func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s %s in sandbox %s: %w", network, address, s.Name, err)
	}
	s.lab.track(c)
	return c, nil
}

// Dial connects from inside the sandbox. The host part of address may be an
// IP address, a sandbox name of the lab ("b:80"), or a name the lab's
// resolvers know (see Lab.AddResolver); names are resolved by Lab.Resolve.
// Without a deadline in ctx, a connection attempt gives up after 5 seconds.
func (s *Sandbox) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("dialing %s from sandbox %s: %w", address, s.Name, err)
	}
	addrs, err := s.lab.Resolve(ctx, s, host)
	if err != nil {
		return nil, fmt.Errorf("dialing %s from sandbox %s: %w", address, s.Name, err)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	var firstErr error
	for _, a := range addrs {
		var c net.Conn
		err := s.NS.Do(func() (err error) {
			c, err = d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			return err
		})
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, fmt.Errorf("dialing %s from sandbox %s: %w", address, s.Name, firstErr)
}

// HTTPClient returns a client whose connections start inside the sandbox,
// so "http://b/" reaches sandbox b. It does not use proxies.
func (s *Sandbox) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:       s.Dial,
			DisableKeepAlives: true,
		},
		Timeout: 30 * time.Second,
	}
}

// link is one interface of a sandbox's endpoint, on one side.
type link struct {
	ns   *netns.NS
	name string
}

// links returns the two ends of each endpoint of the sandbox: the sandbox
// side and (where the driver makes one) the host side.
func (s *Sandbox) links() (inside, outside []link) {
	for _, ep := range s.endpoints() {
		if ep.IfName != "" {
			inside = append(inside, link{s.NS, ep.IfName})
		}
		if ep.HostIfName != "" {
			outside = append(outside, link{s.lab.NS, ep.HostIfName})
		}
	}
	return inside, outside
}

// setLink sets a link up or down. Equivalent to: ip link set NAME up|down
func setLink(ctx context.Context, l link, up bool) error {
	nl, err := l.ns.Netlink()
	if err != nil {
		return err
	}
	lk, err := nl.LinkByName(l.name)
	if err != nil {
		return fmt.Errorf("finding %s in %s: %w", l.name, l.ns, err)
	}
	state := map[bool]string{true: "up", false: "down"}[up]
	explain.Say(ctx, "%s", l.ns.Shell("ip link set "+l.name+" "+state))
	if up {
		err = nl.LinkSetUp(lk)
	} else {
		err = nl.LinkSetDown(lk)
	}
	if err != nil {
		return fmt.Errorf("setting %s %s in %s: %w", l.name, state, l.ns, err)
	}
	return nil
}

// loUp brings lo up. Equivalent to: ip link set lo up
func loUp(ctx context.Context, ns *netns.NS) error {
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	explain.Say(ctx, "%s", ns.Shell("ip link set lo up"))
	if err := nl.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}); err != nil {
		return fmt.Errorf("bringing lo up in %s: %w", ns, err)
	}
	return nil
}

// hostPort formats an address and port for dialing.
func hostPort(a netip.Addr, port int) string { return net.JoinHostPort(a.String(), strconv.Itoa(port)) }
