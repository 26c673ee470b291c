package sandnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/dnsrun"
	"github.com/sandnet/sandnet/internal/sandboxfiles"
	"github.com/sandnet/sandnet/internal/state"
	"github.com/sandnet/sandnet/netns"
)

// DNSMode says how a Host runs the embedded name server that answers, on a
// bridge network's gateway address, for the network's sandboxes.
type DNSMode string

const (
	// DNSHelper (the default) runs the name server in a small detached
	// process, one per state dir, started on demand by re-executing the
	// running program (see the package doc), so the resolver keeps working
	// after the attaching program exits (the `sandnet` command does), the way
	// netavark starts aardvark-dns. It stops when no endpoint needs it.
	DNSHelper DNSMode = ""
	// DNSInProcess serves from the Host's own process, while the process
	// runs and until Host.Close. No process is started.
	DNSInProcess DNSMode = "in-process"
	// DNSOff runs no name server: sandboxes get the host's name servers and
	// do not resolve each other's names.
	DNSOff DNSMode = "off"
)

// checkDNSConfig validates the DNS part of a HostConfig.
func checkDNSConfig(c HostConfig) error {
	switch c.DNS {
	case DNSHelper, DNSInProcess, DNSOff:
	default:
		return invalidf("host config: DNS mode %q (want %q, %q or %q)", c.DNS, DNSHelper, DNSInProcess, DNSOff)
	}
	for _, u := range c.DNSUpstreams {
		if !u.IsValid() || u.Port() == 0 {
			return invalidf("host config: DNS upstream %s needs an address and a port", u)
		}
	}
	return nil
}

// dnsNames are the names an endpoint answers to: its hostname, its aliases
// and its sandbox ID (as Docker answers to the container name) when that is
// a valid DNS name.
func dnsNames(ep *Endpoint) []string {
	var names []string
	for _, n := range append([]string{ep.Hostname}, ep.Aliases...) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if ep.SandboxID != "" && !slices.Contains(names, ep.SandboxID) && dns.CheckName(ep.SandboxID) == nil {
		names = append(names, ep.SandboxID)
	}
	return names
}

// usesEmbeddedDNS reports whether the network has an embedded name server.
func (h *Host) usesEmbeddedDNS(n *Network) bool {
	return h.dnsMode != DNSOff && hasNameServer(n)
}

// setupDNS writes the sandbox's resolv.conf and hosts and makes sure the
// network's name server runs, as one step (startDNS, joined at once).
func (h *Host) setupDNS(ctx context.Context, tx *attachTx) error {
	join, err := h.startDNS(ctx, tx, false)
	if err != nil {
		return err
	}
	return join()
}

// startDNS is the DNS step of an attach: the sandbox's resolv.conf and
// hosts, and the network's name server. The endpoint's name needs no
// registering: the server reads the endpoint records in the state dir.
//
// resolv.conf gets, in order of preference: the caller's servers
// (AttachOptions.DNS), the network's embedded server (its gateway), or the
// host's servers with loopback stubs replaced by the real upstreams; plus
// the host's search domains and options and the caller's.
//
// What the files say goes into the endpoint at once. Writing them (and
// making sure the server runs) is the slow part: creating /etc/netns/NAME
// and two files in it on a disk file system can cost more than all the
// links, and no other step needs them. With background set (and no
// explanation asked for, which reads in order) that part runs in a
// goroutine beside the link steps. join waits for it, puts its undos on
// tx.undo, records the paths written in the endpoint and returns its
// error: call it exactly once, also when a step in between failed (before
// the undo stack runs), and touch none of the endpoint's DNS fields
// before.
func (h *Host) startDNS(ctx context.Context, tx *attachTx, background bool) (join func() error, err error) {
	n, ep, opts := &tx.net.Network, tx.ep, tx.opts
	hostRC, stubs, err := dns.ReadHost(h.dnsFiles)
	if err != nil {
		return nil, fmt.Errorf("reading the host's resolver configuration: %w", err)
	}
	var own []netip.Addr // the network's embedded server, unless the caller gives servers
	embedded := len(opts.DNS) == 0 && h.usesEmbeddedDNS(n)
	if embedded {
		own = slices.DeleteFunc([]netip.Addr{n.Gateway, n.Gateway6}, func(a netip.Addr) bool { return !a.IsValid() })
	}
	rc := hostRC.ForSandbox(opts.DNS, own, opts.DNSSearch, opts.DNSOptions)
	if len(rc.Nameservers) == 0 && len(stubs) > 0 {
		h.log.Warn("the host's only name servers are loopback stubs a sandbox cannot reach; its resolv.conf gets none", "stubs", stubs, "sandbox", ep.SandboxID)
	}
	ep.DNS, ep.DNSSearch, ep.DNSOptions = rc.Nameservers, rc.Search, rc.Options

	var self []dns.HostEntry
	if names := dnsNames(ep); len(names) > 0 {
		for _, p := range ep.Addresses {
			self = append(self, dns.HostEntry{Addr: p.Addr(), Names: names})
		}
	}
	resolv, hosts := sandboxfiles.ForNamespace(tx.sb.Name(), rc.Bytes(), dns.Hosts(self, dns.HostEntries(opts.ExtraHosts)), opts.ResolvConfPath, opts.HostsPath)

	var undo undoStack
	id, dnsNet := ep.ID, dnsNetwork(n)
	work := func() error {
		if embedded {
			if err := h.dns.Ensure(ctx, dnsNet); err != nil {
				return err
			}
		}
		return writeDNSFiles(ctx, h, id, &undo, resolv, hosts)
	}
	finish := func(err error) error {
		tx.undo = append(tx.undo, undo...)
		ep.ResolvConf, ep.Hosts = resolv.Written, hosts.Written
		return err
	}
	return tx.beside(ctx, background, work, finish), nil
}

// writeDNSFiles writes files for endpoint id (sandboxfiles.Write),
// pushing on undo what releases each file of sandnet's again.
func writeDNSFiles(ctx context.Context, h *Host, id string, undo *undoStack, files ...*sandboxfiles.File) error {
	return sandboxfiles.Write(ctx, h.st, id, func(path string) {
		undo.push(func(ctx context.Context) error { return sandboxfiles.Release(ctx, h.st, path, id) })
	}, files...)
}

// teardownDNS removes the files setupDNS wrote under /etc/netns, unless
// another endpoint of the same sandbox (on another network) uses them too;
// idempotent. The name vanishes with the endpoint's record, and the
// network's name server stops by itself after the last endpoint needing it.
func (h *Host) teardownDNS(ctx context.Context, rec *networkRecord, ep *Endpoint) error {
	var name string // a named namespace: its files are found by its counts too
	if dir, base := filepath.Split(ep.NetNS); filepath.Clean(dir) == netns.Dir {
		name = base
	}
	return sandboxfiles.ReleaseAll(ctx, h.st, ep.ID, name, append(slices.Clone(ep.ResolvConf), ep.Hosts...)...)
}

// hasNameServer reports whether network n's gateway runs the embedded
// name server (when the Host's DNS mode is not off).
func hasNameServer(n *Network) bool { return traitsOf(n.Driver).nameServer && n.Gateway.IsValid() }

// dnsNetwork is what the name-server runner needs to know of n.
func dnsNetwork(n *Network) dnsrun.Network {
	return dnsrun.Network{Name: n.Name, Subnet: n.Subnet, Subnet6: n.Subnet6, Gateway: n.Gateway, Gateway6: n.Gateway6, Bridge: n.Bridge,
		Internal: n.Internal, Forward: n.DNSForward}
}

// The name-server runner (internal/dnsrun) runs in a helper process by
// default: the running program re-executed, which this init function turns
// into the helper before main runs. It serves what the state dir's records
// say, with nothing of a Host.
func init() {
	if dir := dnsrun.HelperDir(); dir != "" {
		os.Exit(dnsrun.HelperMain(dir, func(dir string) (dnsrun.Source, error) {
			st, err := state.Open[Network, Endpoint](dir)
			if err != nil {
				return nil, err
			}
			return records(st), nil
		}))
	}
}

// records tells the name-server runner what to serve, from the state
// dir's records (dnsrun.Records).
func records(st *stateStore) dnsrun.Records[Network, Endpoint] {
	return dnsrun.Records[Network, Endpoint]{
		Store:  st,
		Serve:  func(n *Network) (dnsrun.Network, bool) { return dnsNetwork(n), hasNameServer(n) },
		DNS:    func(ep *Endpoint) []netip.Addr { return ep.DNS },
		Record: func(ep *Endpoint) dns.Record { return dns.Record{Names: dnsNames(ep), Addrs: addrsOf(ep)} },
	}
}
