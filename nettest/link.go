package nettest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/explain"
)

// Direction says which way traffic is shaped, seen from the sandbox.
type Direction int

// The directions: Egress shapes what the sandbox sends (its own interface),
// Ingress what it receives (the host side of its veth), Both does both.
const (
	Both Direction = iota
	Egress
	Ingress
)

// SetRate limits the sandbox's links to bitsPerSecond with a token bucket
// (tbf) as root qdisc, in both directions (see SetRateDir); 0 removes the
// limit. It replaces a SetNetem on the same links.
//
// Equivalent to: tc qdisc replace dev eth0 root tbf rate RATEbit burst B latency 50ms
func (s *Sandbox) SetRate(bitsPerSecond uint64) { s.SetRateDir(Both, bitsPerSecond) }

// SetRateDir is SetRate for one direction.
func (s *Sandbox) SetRateDir(dir Direction, bitsPerSecond uint64) {
	l := s.lab
	l.helper()
	for _, lk := range s.shaped(dir) {
		var err error
		if bitsPerSecond == 0 {
			err = delRoot(l.ctx, lk)
		} else {
			err = setTbf(l.ctx, lk, bitsPerSecond)
		}
		if err != nil {
			l.fatalf("sandbox %s: %v", s.Name, err)
			return
		}
	}
}

func (s *Sandbox) shaped(dir Direction) []link {
	in, out := s.links()
	switch dir {
	case Egress:
		return in
	case Ingress:
		return out
	}
	return append(in, out...)
}

// setTbf puts a tbf qdisc on the link: a bucket of 10 ms worth of tokens
// (at least 32 KiB, so one GSO packet fits) and a queue of 50 ms.
func setTbf(ctx context.Context, lk link, bits uint64) error {
	nl, err := lk.ns.Netlink()
	if err != nil {
		return err
	}
	dev, err := nl.LinkByName(lk.name)
	if err != nil {
		return fmt.Errorf("finding %s in %s: %w", lk.name, lk.ns, err)
	}
	rate := bits / 8 // bytes per second
	burst := max(rate/100, 64<<10)
	limit := rate/20 + burst
	q := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Limit:      uint32(limit),
		Buffer:     netlink.Xmittime(rate, uint32(burst)),
	}
	explain.Say(ctx, "%s", lk.ns.Shell(fmt.Sprintf("tc qdisc replace dev %s root tbf rate %dbit burst %d limit %d", lk.name, bits, burst, limit)))
	if err := nl.QdiscReplace(q); err != nil {
		return fmt.Errorf("setting rate %d bit/s on %s in %s: %w", bits, lk.name, lk.ns, err)
	}
	return nil
}

// delRoot removes the link's root qdisc; a link without one is fine.
func delRoot(ctx context.Context, lk link) error {
	nl, err := lk.ns.Netlink()
	if err != nil {
		return err
	}
	dev, err := nl.LinkByName(lk.name)
	if err != nil {
		return fmt.Errorf("finding %s in %s: %w", lk.name, lk.ns, err)
	}
	qs, err := nl.QdiscList(dev)
	if err != nil {
		return fmt.Errorf("listing qdiscs of %s in %s: %w", lk.name, lk.ns, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent != netlink.HANDLE_ROOT || q.Type() == "noqueue" {
			continue
		}
		explain.Say(ctx, "%s", lk.ns.Shell("tc qdisc del dev "+lk.name+" root"))
		if err := nl.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("removing the qdisc of %s in %s: %w", lk.name, lk.ns, err)
		}
	}
	return nil
}

// Netem describes a misbehaving link (the netem qdisc). Zero fields do
// nothing; Loss and Corrupt are percentages.
type Netem struct {
	Delay, Jitter time.Duration
	Loss, Corrupt float64
}

// ErrNoNetem is returned by TryNetem when the kernel lacks the netem qdisc.
var ErrNoNetem = errors.New("the netem qdisc is not available on this kernel (sch_netem, CONFIG_NET_SCH_NETEM)")

// SetNetem makes the sandbox's links (both directions) delay, jitter, drop
// and corrupt packets, replacing SetRate. Where the kernel has no netem the
// test is skipped with a message saying so.
//
// Equivalent to: tc qdisc replace dev eth0 root netem delay D J loss L% corrupt C%
func (s *Sandbox) SetNetem(n Netem) {
	l := s.lab
	l.helper()
	err := s.TryNetem(Both, n)
	if errors.Is(err, ErrNoNetem) {
		l.skipf("%v", err)
		return
	}
	if err != nil {
		l.fatalf("sandbox %s: %v", s.Name, err)
	}
}

// TryNetem is SetNetem for one direction that returns ErrNoNetem (wrapped)
// instead of skipping. It finds out by trying.
func (s *Sandbox) TryNetem(dir Direction, n Netem) error {
	for _, lk := range s.shaped(dir) {
		nl, err := lk.ns.Netlink()
		if err != nil {
			return err
		}
		dev, err := nl.LinkByName(lk.name)
		if err != nil {
			return fmt.Errorf("finding %s in %s: %w", lk.name, lk.ns, err)
		}
		q := netlink.NewNetem(
			netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
			netlink.NetemQdiscAttrs{
				Latency: uint32(n.Delay.Microseconds()), Jitter: uint32(n.Jitter.Microseconds()),
				Loss: float32(n.Loss), CorruptProb: float32(n.Corrupt),
			})
		explain.Say(s.lab.ctx, "%s", lk.ns.Shell(fmt.Sprintf("tc qdisc replace dev %s root netem delay %s %s loss %g%% corrupt %g%%", lk.name, n.Delay, n.Jitter, n.Loss, n.Corrupt)))
		if err := nl.QdiscReplace(q); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("setting netem on %s in %s: %w", lk.name, lk.ns, ErrNoNetem)
			}
			return fmt.Errorf("setting netem on %s in %s: %w", lk.name, lk.ns, err)
		}
	}
	return nil
}

// Partition cuts the sandbox off: the host side of each of its veths goes
// down (its own interfaces keep their addresses and routes, and see the
// carrier go). Endpoints without a host side (macvlan) have their sandbox
// interface taken down instead. Heal undoes it.
//
// Equivalent to: ip link set HOSTVETH down
func (s *Sandbox) Partition() {
	s.lab.helper()
	if err := s.setCarrier(false); err != nil {
		s.lab.fatalf("partitioning sandbox %s: %v", s.Name, err)
	}
}

// Heal brings back what Partition took down (and the routes a downed
// sandbox interface lost). Use WaitReachable to wait until traffic flows.
func (s *Sandbox) Heal() {
	s.lab.helper()
	if err := s.setCarrier(true); err != nil {
		s.lab.fatalf("healing sandbox %s: %v", s.Name, err)
	}
}

func (s *Sandbox) setCarrier(up bool) error {
	for _, ep := range s.endpoints() {
		if ep.HostIfName != "" {
			if err := setLink(s.lab.ctx, link{s.lab.NS, ep.HostIfName}, up); err != nil {
				return err
			}
			continue
		}
		if ep.IfName == "" {
			continue
		}
		if err := setLink(s.lab.ctx, link{s.NS, ep.IfName}, up); err != nil {
			return err
		}
		if up {
			if err := s.restoreRoutes(ep.IfName, ep.Routes); err != nil {
				return err
			}
		}
	}
	return nil
}
