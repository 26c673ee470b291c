package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

// session is one tool working in one lab: attach and detach sandbox i.
type session interface {
	attach(ctx context.Context, i int) error
	detach(ctx context.Context, i int) error
	// finish removes what the tool made beside its endpoints (not timed)
	// and reports anything it left behind.
	finish(ctx context.Context) (note string, err error)
}

// tool starts sessions; missing says why it cannot run here ("" if it can).
type tool struct {
	name    string
	missing func() string
	start   func(ctx context.Context, l *lab) (session, error)
}

// errUnsupported marks a case a tool cannot do yet; the run is skipped with
// the error as its note.
var errUnsupported = errors.New("unsupported")

var allTools = []tool{
	{name: "sandnet", missing: func() string { return "" }, start: startSandnet(false)},
	{name: "sandnet-going", missing: func() string { return "" }, start: startSandnet(true)},
	{name: "cni", missing: cniMissing, start: startCNI},
	{name: "sandnet-cni", missing: sandnetCNIMissing, start: startSandnetCNI},
	{name: "netavark", missing: netavarkMissing, start: startNetavark},
	{name: "kernel", missing: func() string { return "" }, start: startKernel},
	{name: "kernel-lean", missing: func() string { return "" }, start: startKernelLean},
}

// ---- sandnet ----

type sandnetSession struct {
	lab   *lab
	h     *sandnet.Host
	net   sandnet.Network
	eps   []*sandnet.Endpoint
	going bool
}

// startSandnet: a Host over the lab, its state dir in the scratch dir.
// going detaches as a runtime does right before deleting the namespace.
func startSandnet(going bool) func(ctx context.Context, l *lab) (session, error) {
	return func(ctx context.Context, l *lab) (session, error) {
		h, err := sandnet.NewHostNS(l.host, sandnet.HostConfig{StateDir: filepath.Join(l.dir, "state")})
		if err != nil {
			return nil, err
		}
		s := &sandnetSession{lab: l, h: h, going: going, eps: make([]*sandnet.Endpoint, len(l.sbx)),
			net: sandnet.Network{Name: "bench", Subnet: subnet, Gateway: gateway}}
		if _, err := h.CreateNetwork(ctx, s.net); err != nil {
			h.Close()
			return nil, err
		}
		return s, nil
	}
}

func (s *sandnetSession) attach(ctx context.Context, i int) error {
	var opts sandnet.AttachOptions
	if s.lab.ports {
		opts.Ports = []sandnet.PortMapping{{HostPort: hostPort(i), ContainerPort: containerPort, Proto: "tcp"}}
	}
	ep, err := s.h.Attach(ctx, s.lab.path(i), s.net, opts)
	if err != nil && s.lab.ports && errors.Is(err, sandnet.ErrInvalid) && strings.Contains(err.Error(), "not supported") {
		return fmt.Errorf("%w: publishing ports: %v", errUnsupported, err)
	}
	s.eps[i] = ep
	return err
}

func (s *sandnetSession) detach(ctx context.Context, i int) error {
	return s.h.Detach(ctx, s.eps[i], sandnet.DetachOptions{SandboxGoing: s.going})
}

func (s *sandnetSession) finish(ctx context.Context) (string, error) {
	defer s.h.Close()
	var left []string
	if !s.going {
		if n := veths(s.lab.host); n > 0 {
			left = append(left, fmt.Sprintf("%d veth(s)", n))
		}
		if eps, _ := s.h.Endpoints(""); len(eps) > 0 {
			left = append(left, fmt.Sprintf("%d endpoint record(s)", len(eps)))
		}
	}
	err := s.h.RemoveNetwork(ctx, s.net.Name)
	if leases, _ := os.ReadDir(filepath.Join(s.h.StateDir(), "ipam", s.net.Name)); len(leases) > 0 {
		left = append(left, fmt.Sprintf("%d lease file(s)", len(leases)))
	}
	left = append(left, firewallLeft(ctx, s.lab.host)...)
	return leftNote(left), err
}

// leftNote says what a tool left behind after its last detach (and, for
// sandnet, the network's removal); "" if nothing.
func leftNote(left []string) string {
	if len(left) == 0 {
		return ""
	}
	return "left behind: " + strings.Join(left, ", ")
}

// firewallLeft counts the nftables tables, chains, rules and set or map
// elements in ns (iptables-nft rules included, as they are nftables rules):
// the lab host starts with none, so all of them were left by the tool.
func firewallLeft(ctx context.Context, ns *netns.NS) []string {
	out, err := ns.Command(ctx, "nft", "-j", "list", "ruleset").Output()
	if err != nil {
		return nil // no nft: nothing to count with
	}
	var rs struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if json.Unmarshal(out, &rs) != nil {
		return nil
	}
	var tables, chains, rules, elems int
	for _, o := range rs.Nftables {
		switch {
		case o["table"] != nil:
			tables++
		case o["chain"] != nil:
			chains++
		case o["rule"] != nil:
			rules++
		case o["set"] != nil || o["map"] != nil:
			var s struct {
				Elem []json.RawMessage `json:"elem"`
			}
			if o["set"] != nil {
				json.Unmarshal(o["set"], &s)
			} else {
				json.Unmarshal(o["map"], &s)
			}
			elems += len(s.Elem)
		}
	}
	if tables == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d nftables table(s) with %d chain(s), %d rule(s), %d set element(s)", tables, chains, rules, elems)}
}

func veths(ns *netns.NS) int {
	nl, err := ns.Netlink()
	if err != nil {
		return -1
	}
	links, _ := nl.LinkList()
	n := 0
	for _, l := range links {
		if _, ok := l.(*netlink.Veth); ok {
			n++
		}
	}
	return n
}

// ---- the kernel's floor: one bare netlink request each way ----

type kernelSession struct {
	lab *lab
	nl  *netlink.Handle
	br  int
	idx []int

	// lean: the requests as sandnet makes them: one queue each way per
	// end (no grace period to trim the default's), and a detach that
	// returns once the kernel has unregistered the pair, the rest of the
	// deletion going on meanwhile.
	lean    bool
	mu      sync.Mutex // guards freeing (the -parallel floor detaches from several goroutines)
	freeing []<-chan struct{}
}

func startKernelLean(ctx context.Context, l *lab) (session, error) {
	s, err := startKernel(ctx, l)
	if err != nil {
		return nil, err
	}
	s.(*kernelSession).lean = true
	return s, nil
}

func startKernel(ctx context.Context, l *lab) (session, error) {
	nl, err := l.host.Netlink()
	if err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "kbr0"
	if err := nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return nil, err
	}
	br, err := nl.LinkByName("kbr0")
	if err != nil {
		return nil, err
	}
	nl.LinkSetUp(br)
	return &kernelSession{lab: l, nl: nl, br: br.Attrs().Index, idx: make([]int, len(l.sbx))}, nil
}

// attach is what `ip link add kvI master kbr0 up type veth peer name eth0
// netns SBX` sends: the veth pair in one request, nothing else (the
// kernel echoes the new link back, for its index).
func (s *kernelSession) attach(ctx context.Context, i int) error {
	sock, err := s.lab.host.RouteSocket()
	if err != nil {
		return err
	}
	return s.attachOn(sock, i)
}

// attachOn is attach over sock: the -parallel floor gives each goroutine
// its own, as requests on a shared socket take turns.
func (s *kernelSession) attachOn(sock *nl.SocketHandle, i int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sock}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(fmt.Sprintf("kv%d", i))))
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(s.br))))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	peer := info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("eth0"))
	if s.lean {
		for _, a := range []int{unix.IFLA_NUM_TX_QUEUES, unix.IFLA_NUM_RX_QUEUES} {
			req.AddData(nl.NewRtAttr(a, nl.Uint32Attr(1)))
			peer.AddRtAttr(a, nl.Uint32Attr(1))
		}
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(s.lab.sbx[i].Fd())))
	req.AddData(info)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return fmt.Errorf("kv%d: the kernel echoed no link", i)
	}
	link, err := netlink.LinkDeserialize(nil, msgs[0])
	if err != nil {
		return err
	}
	s.idx[i] = link.Attrs().Index
	return nil
}

// detach is a bare synchronous `ip link del kvI` (by index, no lookup),
// or when lean the same request, returning when the kernel announces the
// link gone (veth.Unregister).
func (s *kernelSession) detach(ctx context.Context, i int) error {
	if s.lean {
		done, err := veth.Unregister(ctx, s.lab.host, fmt.Sprintf("kv%d", i))
		s.mu.Lock()
		s.freeing = append(s.freeing, done)
		s.mu.Unlock()
		return err
	}
	return s.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: s.idx[i]}})
}

func (s *kernelSession) finish(ctx context.Context) (string, error) {
	for _, done := range s.freeing {
		if done != nil {
			<-done
		}
	}
	return "", nil
}

// ---- exec helpers for the peers ----

// runIn runs a program inside ns, forked from a thread that is in ns (as a
// runtime does; no nsenter in between), with stdin and extra environment.
func runIn(ctx context.Context, ns *netns.NS, stdin []byte, env []string, name string, args ...string) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.Env = append(os.Environ(), env...)
	err := ns.Do(func() error { return cmd.Start() })
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String() + " " + out.String())
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, msg)
	}
	return out.Bytes(), nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
