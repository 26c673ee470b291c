package main

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/netns"
)

// The bandwidth capability, with a token bucket (tbf) on each end of the
// pair: the host end's queue shapes what the sandbox receives (ingress),
// the sandbox end's what it sends (egress). No ifb device is needed. The
// qdiscs go with the interfaces on DEL.

// tbfLatency is how long a packet may wait in the bucket's queue.
const tbfLatencyUsec = 25_000

// tbfFor renders a limit: rate in bits/s, burst in bits (default: what
// the rate sends in 10 ms, at least two full frames).
func tbfFor(link int, rateBits, burstBits uint64) *netlink.Tbf {
	rate := rateBits / 8
	burst := burstBits / 8
	if burst == 0 {
		burst = max(rate/100, 2*1514)
	}
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Buffer:     netlink.Xmittime(rate, uint32(burst)),
		Limit:      uint32(rate*tbfLatencyUsec/1_000_000 + burst),
	}
}

// setBandwidth puts the limits on the endpoint's interfaces.
//
// Equivalent to: tc qdisc replace dev HOSTVETH root tbf rate R burst B latency 25ms;
// ip netns exec SBX tc qdisc replace dev eth0 root tbf ...
func setBandwidth(ctx context.Context, h *sandnet.Host, ep *sandnet.Endpoint, bw *bandwidth) error {
	if bw.IngressRate > 0 {
		if ep.HostIfName == "" {
			return fmt.Errorf("ingress limit: the %s driver has no host end to shape: %w", ep.Driver, sandnet.ErrInvalid)
		}
		if err := replaceTbf(h.NS(), ep.HostIfName, bw.IngressRate, bw.IngressBurst); err != nil {
			return err
		}
	}
	if bw.EgressRate > 0 {
		sb, err := netns.Open(ep.NetNS)
		if err != nil {
			return err
		}
		defer sb.Close()
		if err := replaceTbf(sb, ep.IfName, bw.EgressRate, bw.EgressBurst); err != nil {
			return err
		}
	}
	return nil
}

func replaceTbf(ns *netns.NS, ifName string, rate, burst uint64) error {
	nl, err := ns.Netlink()
	if err != nil {
		return err
	}
	l, err := nl.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("finding %s in %s: %w", ifName, ns, err)
	}
	if err := nl.QdiscReplace(tbfFor(l.Attrs().Index, rate, burst)); err != nil {
		return fmt.Errorf("adding a tbf qdisc to %s in %s: %w", ifName, ns, err)
	}
	return nil
}

// checkBandwidth reports a limit missing from an end of the pair.
func checkBandwidth(h *sandnet.Host, ep *sandnet.Endpoint, bw *bandwidth) []string {
	var out []string
	if bw.IngressRate > 0 && ep.HostIfName != "" {
		if p := tbfProblem(h.NS(), ep.HostIfName, bw.IngressRate); p != "" {
			out = append(out, "ingress limit: "+p)
		}
	}
	if bw.EgressRate > 0 {
		sb, err := netns.Open(ep.NetNS)
		if err != nil {
			return append(out, "egress limit: "+err.Error())
		}
		defer sb.Close()
		if p := tbfProblem(sb, ep.IfName, bw.EgressRate); p != "" {
			out = append(out, "egress limit: "+p)
		}
	}
	return out
}

func tbfProblem(ns *netns.NS, ifName string, rateBits uint64) string {
	nl, err := ns.Netlink()
	if err != nil {
		return err.Error()
	}
	l, err := nl.LinkByName(ifName)
	if err != nil {
		return fmt.Sprintf("%s missing from %s", ifName, ns)
	}
	qs, err := nl.QdiscList(l)
	if err != nil {
		return err.Error()
	}
	for _, q := range qs {
		if t, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT && t.Rate == rateBits/8 {
			return ""
		}
	}
	return fmt.Sprintf("no tbf qdisc at %d bit/s on %s in %s", rateBits, ifName, ns)
}
