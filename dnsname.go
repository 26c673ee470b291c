package sandnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/explain"
	"github.com/sandnet/sandnet/internal/statefile"
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

// dnsConfig is what a Host needs for DNS, from its HostConfig.
type dnsConfig struct {
	mode      DNSMode
	files     dns.HostFiles
	upstreams []netip.AddrPort
}

func newDNSConfig(c HostConfig) (dnsConfig, error) {
	switch c.DNS {
	case DNSHelper, DNSInProcess, DNSOff:
	default:
		return dnsConfig{}, invalidf("host config: DNS mode %q (want %q, %q or %q)", c.DNS, DNSHelper, DNSInProcess, DNSOff)
	}
	for _, u := range c.DNSUpstreams {
		if !u.IsValid() || u.Port() == 0 {
			return dnsConfig{}, invalidf("host config: DNS upstream %s needs an address and a port", u)
		}
	}
	return dnsConfig{mode: c.DNS, files: dns.HostFiles{ResolvConf: c.ResolvConf, ResolvedConf: c.ResolvedConf}, upstreams: c.DNSUpstreams}, nil
}

// checkDNSName validates a hostname or alias (RFC 1123 labels).
func checkDNSName(name string) error {
	if len(name) > 253 {
		return invalidf("DNS name %q is longer than 253 bytes", name)
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return invalidf("DNS name %q: label %q must be 1-63 letters, digits or '-', not starting or ending with '-'", name, label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return invalidf("DNS name %q contains %q", name, r)
			}
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
	if ep.SandboxID != "" && !slices.Contains(names, ep.SandboxID) && checkDNSName(ep.SandboxID) == nil {
		names = append(names, ep.SandboxID)
	}
	return names
}

// usesEmbeddedDNS reports whether the network has an embedded name server.
func (h *Host) usesEmbeddedDNS(n *Network) bool {
	return h.dnsCfg.mode != DNSOff && traitsOf(n.Driver).nameServer && n.Gateway.IsValid()
}

// setupDNS writes the sandbox's resolv.conf and hosts and makes sure the
// network's name server runs. Its name needs no registering: the server
// reads the endpoint records in the state dir.
//
// resolv.conf gets, in order of preference: the caller's servers
// (AttachOptions.DNS), the network's embedded server (its gateway), or the
// host's servers with loopback stubs replaced by the real upstreams; plus
// the host's search domains and options and the caller's.
func (h *Host) setupDNS(ctx context.Context, tx *attachTx) error {
	n, ep, opts := &tx.net.Network, tx.ep, tx.opts
	hostRC, stubs, err := dns.ReadHost(h.dnsCfg.files)
	if err != nil {
		return fmt.Errorf("reading the host's resolver configuration: %w", err)
	}
	rc := dns.ResolvConf{Search: hostRC.Search, Options: hostRC.Options}
	embedded := false
	switch {
	case len(opts.DNS) > 0:
		rc.Nameservers = slices.Clone(opts.DNS)
	case h.usesEmbeddedDNS(n):
		embedded = true
		rc.Nameservers = []netip.Addr{n.Gateway}
		if n.Gateway6.IsValid() {
			rc.Nameservers = append(rc.Nameservers, n.Gateway6)
		}
	default:
		rc.Nameservers = hostRC.Nameservers
		if len(rc.Nameservers) == 0 && len(stubs) > 0 {
			h.log.Warn("the host's only name servers are loopback stubs a sandbox cannot reach; its resolv.conf gets none", "stubs", stubs, "sandbox", ep.SandboxID)
		}
	}
	rc = rc.Merge(opts.DNSSearch, opts.DNSOptions)
	ep.DNS, ep.DNSSearch, ep.DNSOptions = rc.Nameservers, rc.Search, rc.Options

	if embedded {
		if err := h.ensureDNSServer(ctx, tx.net, tx.sb); err != nil {
			return err
		}
	}

	var self []dns.HostEntry
	if names := dnsNames(ep); len(names) > 0 {
		for _, p := range ep.Addresses {
			self = append(self, dns.HostEntry{Addr: p.Addr(), Names: names})
		}
	}
	hosts := dns.Hosts(self, dns.HostEntries(opts.ExtraHosts))
	var resolvPaths, hostsPaths []string
	if name := tx.sb.Name(); name != "" {
		resolvPaths = append(resolvPaths, filepath.Join(dns.NetnsDir, name, "resolv.conf"))
		hostsPaths = append(hostsPaths, filepath.Join(dns.NetnsDir, name, "hosts"))
	}
	if opts.ResolvConfPath != "" {
		resolvPaths = append(resolvPaths, opts.ResolvConfPath)
	}
	if opts.HostsPath != "" {
		hostsPaths = append(hostsPaths, opts.HostsPath)
	}
	for _, f := range []struct {
		paths []string
		data  []byte
		rec   *[]string
	}{{resolvPaths, rc.Bytes(), &ep.ResolvConf}, {hostsPaths, hosts, &ep.Hosts}} {
		for _, path := range f.paths {
			if ownedDNSFile(path) {
				// Count this endpoint as a user of the file before writing it.
				if err := h.addDNSRef(path, ep.ID); err != nil {
					return err
				}
				tx.undo.push(func(ctx context.Context) error { return h.releaseDNSFile(ctx, path, ep.ID) })
			}
			if _, err := dns.WriteFile(ctx, path, f.data); err != nil {
				return err
			}
			*f.rec = append(*f.rec, path)
		}
	}
	return nil
}

// ownedDNSFile reports whether sandnet removes the file on Detach: the
// files under /etc/netns are sandnet's; a file the caller asked for (in a
// container's rootfs) stays, as Docker leaves a container's resolv.conf.
func ownedDNSFile(path string) bool {
	return strings.HasPrefix(path, dns.NetnsDir+"/")
}

// teardownDNS removes the files setupDNS wrote under /etc/netns, unless
// another endpoint of the same sandbox (on another network) uses them too;
// idempotent. The name vanishes with the endpoint's record, and the
// network's name server stops by itself after the last endpoint needing it.
func (h *Host) teardownDNS(ctx context.Context, rec *networkRecord, ep *Endpoint) error {
	var paths []string
	for _, p := range append(slices.Clone(ep.ResolvConf), ep.Hosts...) {
		if ownedDNSFile(p) {
			paths = append(paths, p)
		}
	}
	var errs []error
	for _, p := range paths {
		errs = append(errs, h.releaseDNSFile(ctx, p, ep.ID))
	}
	return errors.Join(errs...)
}

// The users of each file under /etc/netns are recorded as one empty file
// per endpoint in StateDir/dnsrefs/HASH/, so Detach knows in O(1) whether
// another endpoint of the same sandbox (on another network) still uses it.

func (h *Host) dnsRefDir(path string) string {
	sum := sha256.Sum256([]byte(path))
	return filepath.Join(h.dir, "dnsrefs", hex.EncodeToString(sum[:8]))
}

func (h *Host) addDNSRef(path, id string) error {
	dir := h.dnsRefDir(path)
	if err := statefile.MkdirAll(dir); err != nil {
		return err
	}
	if err := statefile.Create(filepath.Join(dir, id), []byte(path+"\n")); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

// releaseDNSFile drops endpoint id's use of path and removes the file when
// no other endpoint uses it.
func (h *Host) releaseDNSFile(ctx context.Context, path, id string) error {
	dir := h.dnsRefDir(path)
	if err := statefile.Remove(filepath.Join(dir, id)); err != nil {
		return err
	}
	if left, err := os.ReadDir(dir); err == nil && len(left) > 0 {
		return nil // another endpoint of the sandbox still uses it
	}
	os.Remove(dir)
	return dns.RemoveFile(ctx, path, true)
}

// explainDNSServer reports what the name server is, as a person would set
// one up.
func explainDNSServer(ctx context.Context, h *Host, n *Network) {
	if !explain.Enabled(ctx) {
		return
	}
	addrs := n.Gateway.String()
	if n.Gateway6.IsValid() {
		addrs += " and " + n.Gateway6.String()
	}
	explain.Say(ctx, "# a DNS server for network %s answers on %s port 53 (udp+tcp) in the host namespace, like aardvark-dns: %s", n.Name, addrs,
		h.ns.Shell(fmt.Sprintf("dnsmasq --no-resolv --bind-interfaces --listen-address=%s --addn-hosts=HOSTS-OF-%s", n.Gateway, n.Name)))
}
