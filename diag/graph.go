package diag

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sandnet/sandnet"
)

// Topo is what a Host has built: its networks and their endpoints, as the
// state dir records them. DOT draws it.
type Topo struct {
	// HostNS names the namespace playing the host.
	HostNS    string              `json:"hostNS"`
	Networks  []sandnet.Network   `json:"networks"`
	Endpoints []*sandnet.Endpoint `json:"endpoints"`
}

// Topology reads h's networks and endpoints. Records that cannot be read
// are reported in the error next to what could be read.
func Topology(h *sandnet.Host) (*Topo, error) {
	nets, err1 := h.Networks()
	eps, err2 := h.Endpoints("")
	t := &Topo{HostNS: h.NS().String(), Networks: nets, Endpoints: eps}
	if err1 != nil {
		return t, err1
	}
	return t, err2
}

// Only keeps the endpoints of the sandbox namespace with the given inode
// and the networks they are on.
func (t *Topo) Only(inode uint64) *Topo {
	out := &Topo{HostNS: t.HostNS}
	keep := map[string]bool{}
	for _, ep := range t.Endpoints {
		if ep.NetNSInode == inode {
			out.Endpoints = append(out.Endpoints, ep)
			keep[ep.Network] = true
		}
	}
	for _, n := range t.Networks {
		if keep[n.Name] {
			out.Networks = append(out.Networks, n)
		}
	}
	return out
}

// DOT renders the topology as a Graphviz digraph: the host namespace as a
// cluster holding the bridges (one per network) and the host-side veths,
// one cluster per sandbox namespace holding its interfaces, veth pairs as
// undirected edges, and published ports as host-side nodes with an arrow to
// the sandbox interface they reach. Render it with `dot -Tsvg`.
func (t *Topo) DOT() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("digraph sandnet {")
	w("  rankdir=LR;")
	w("  node [fontname=\"Helvetica\", fontsize=10];")
	w("  edge [fontname=\"Helvetica\", fontsize=9];")
	w("  subgraph cluster_host {")
	w("    label=%s; style=rounded; color=gray40;", q("host namespace "+t.HostNS))
	for _, n := range t.Networks {
		label := fmt.Sprintf("network %s (%s)", n.Name, n.Driver)
		if n.Bridge != "" {
			label = fmt.Sprintf("bridge %s\\n%s", n.Bridge, label)
		}
		if n.Subnet.IsValid() {
			label += fmt.Sprintf("\\n%s gw %s", n.Subnet, n.Gateway)
		}
		if n.Subnet6.IsValid() {
			label += fmt.Sprintf("\\n%s gw %s", n.Subnet6, n.Gateway6)
		}
		if n.Internal {
			label += "\\ninternal"
		}
		w("    %s [shape=box, style=filled, fillcolor=lightblue, label=%s];", q("net:"+n.Name), qRaw(label))
	}
	for _, ep := range t.Endpoints {
		if ep.HostIfName != "" {
			w("    %s [shape=ellipse, label=%s];", q("hif:"+ep.HostIfName), q(ep.HostIfName))
		}
		for i, p := range ep.Ports {
			host := "0.0.0.0"
			if p.HostIP.IsValid() {
				host = p.HostIP.String()
			}
			w("    %s [shape=cds, style=filled, fillcolor=khaki, label=%s];", q(fmt.Sprintf("port:%s:%d", ep.ID, i)), q(fmt.Sprintf("%s:%d/%s", host, p.HostPort, proto(p.Proto))))
		}
	}
	w("  }")
	// Sandboxes: one cluster per namespace, holding its endpoints' interfaces.
	byNS := map[uint64][]*sandnet.Endpoint{}
	var inodes []uint64
	for _, ep := range t.Endpoints {
		if _, ok := byNS[ep.NetNSInode]; !ok {
			inodes = append(inodes, ep.NetNSInode)
		}
		byNS[ep.NetNSInode] = append(byNS[ep.NetNSInode], ep)
	}
	sort.Slice(inodes, func(i, j int) bool { return inodes[i] < inodes[j] })
	for i, ino := range inodes {
		eps := byNS[ino]
		w("  subgraph cluster_sb%d {", i)
		w("    label=%s; style=rounded; color=darkgreen;", qRaw(fmt.Sprintf("sandbox %s\\nnet:[%d]", esc(eps[0].SandboxID), ino)))
		for _, ep := range eps {
			label := ep.IfName
			for _, a := range ep.Addresses {
				label += "\\n" + a.String()
			}
			w("    %s [shape=ellipse, style=filled, fillcolor=palegreen, label=%s];", q("ep:"+ep.ID), qRaw(label))
		}
		w("  }")
	}
	for _, ep := range t.Endpoints {
		if ep.HostIfName != "" {
			w("  %s -> %s [dir=none, penwidth=2, label=\"veth\"];", q("ep:"+ep.ID), q("hif:"+ep.HostIfName))
			w("  %s -> %s [dir=none];", q("hif:"+ep.HostIfName), q("net:"+ep.Network))
		} else {
			w("  %s -> %s [dir=none, style=dashed, label=%s];", q("ep:"+ep.ID), q("net:"+ep.Network), q(string(ep.Driver)))
		}
		for i, p := range ep.Ports {
			w("  %s -> %s [label=%s, color=darkorange];", q(fmt.Sprintf("port:%s:%d", ep.ID, i)), q("ep:"+ep.ID), q(fmt.Sprintf("DNAT to :%d", p.ContainerPort)))
		}
	}
	w("}")
	return b.String()
}

func proto(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}

// q quotes s as a DOT string.
func q(s string) string { return `"` + esc(s) + `"` }

// qRaw quotes s, which may hold DOT escapes such as \n, as they are.
func qRaw(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func esc(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
