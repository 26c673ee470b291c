package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/sandnet/sandnet"
)

// netConf is the plugin's configuration (stdin). The standard keys are the
// spec's; the rest mirror sandnet.Network in JSON, plus where the state
// lives and how the firewall and the name server run.
type netConf struct {
	CNIVersion   string          `json:"cniVersion"`
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities,omitempty"`
	// IPAM, when present, names the IPAM plugin that hands out addresses
	// instead of sandnet's own pools (as the bridge plugin delegates).
	IPAM          *types.IPAM          `json:"ipam,omitempty"`
	RawPrevResult map[string]any       `json:"prevResult,omitempty"`
	RuntimeConfig runtimeConfig        `json:"runtimeConfig"`
	Valid         []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
	Attachments   []types.GCAttachment `json:"cni.dev/attachments,omitempty"`

	// The network: sandnet.Network's keys ("driver", "subnet", "gateway",
	// "ipRange", "subnet6", "bridge", "mtu", "internal", "routed",
	// "clusterCIDR", "parent", "vni", "peers", "underlay"...); "name" is the
	// configuration's.
	sandnet.Network
	// ICC is "icc": false forbids traffic between the network's sandboxes
	// (sandnet.Network.NoICC).
	ICC *bool `json:"icc,omitempty"`

	// NodeRoutes are routes to the other nodes' pod subnets (host-gw),
	// added to the node's namespace on ADD when missing.
	NodeRoutes []nodeRoute `json:"nodeRoutes,omitempty"`

	// StateDir is shared with the library and the CLI; default /run/sandnet.
	StateDir string `json:"stateDir,omitempty"`
	// Firewall is the backend: "nftables", "iptables" or "" (auto).
	Firewall string `json:"firewall,omitempty"`
	// DNS is the spec's DNS object (nameservers, domain, search, options,
	// added to what the sandbox gets) with one more member, "enabled":
	// false turns the embedded name server off (default on). A bare false
	// means the same to sandnet, but runtimes built on libcni reject it,
	// as "dns" must be an object for them.
	DNS dnsSetting `json:"dns"`
	// Bandwidth limits every sandbox of the network, as the bandwidth
	// plugin's keys; runtimeConfig.bandwidth overrides it per sandbox.
	Bandwidth *bandwidth `json:"bandwidth,omitempty"`
}

// runtimeConfig carries the capabilities the runtime fills in.
type runtimeConfig struct {
	PortMappings []portMapping       `json:"portMappings,omitempty"`
	IPs          []string            `json:"ips,omitempty"`
	MAC          string              `json:"mac,omitempty"`
	Aliases      map[string][]string `json:"aliases,omitempty"`
	DNS          *dnsCapability      `json:"dns,omitempty"`
	Bandwidth    *bandwidth          `json:"bandwidth,omitempty"`
}

// portMapping is one entry of the portMappings capability.
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// bandwidth is the bandwidth capability: rates in bits per second, bursts
// in bits; zero means no limit in that direction.
type bandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// dnsSetting is the "dns" key: the spec's DNS object with "enabled", or a
// boolean.
type dnsSetting struct {
	Off  bool
	Conf types.DNS
}

// dnsObject is the object form of the "dns" key.
type dnsObject struct {
	types.DNS
	Enabled *bool `json:"enabled,omitempty"`
}

func (d *dnsSetting) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var on bool
	if err := json.Unmarshal(b, &on); err == nil {
		d.Off = !on
		return nil
	}
	var o dnsObject
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("dns: want {enabled, nameservers, domain, search, options}: %w", err)
	}
	d.Conf, d.Off = o.DNS, o.Enabled != nil && !*o.Enabled
	return nil
}

// parseConf decodes stdin and checks what sandnet itself will not.
func parseConf(stdin []byte) (*netConf, error) {
	c := &netConf{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, &types.Error{Code: types.ErrDecodingFailure, Msg: "decoding the network configuration", Details: err.Error()}
	}
	if c.Name == "" {
		return nil, invalidConf("the network configuration has no name")
	}
	return c, nil
}

func invalidConf(format string, args ...any) *types.Error {
	return &types.Error{Code: types.ErrInvalidNetworkConfig, Msg: fmt.Sprintf(format, args...)}
}

// network is the sandnet network the configuration describes.
func (c *netConf) network() sandnet.Network {
	n := c.Network
	n.Name = c.Name
	if c.ICC != nil {
		n.NoICC = !*c.ICC
	}
	return n
}

// prevResult parses the prevResult in the configuration's version; nil
// when there is none.
func (c *netConf) prevResult() (types.Result, error) {
	if c.RawPrevResult == nil {
		return nil, nil
	}
	pc := &types.NetConf{CNIVersion: c.CNIVersion, RawPrevResult: c.RawPrevResult}
	if err := version.ParsePrevResult(pc); err != nil {
		return nil, &types.Error{Code: types.ErrDecodingFailure, Msg: "decoding prevResult", Details: err.Error()}
	}
	return pc.PrevResult, nil
}

// bandwidth is the limit for this sandbox: the runtime's, else the
// configuration's.
func (c *netConf) bandwidth() *bandwidth {
	if b := c.RuntimeConfig.Bandwidth; b != nil && *b != (bandwidth{}) {
		return b
	}
	if b := c.Bandwidth; b != nil && *b != (bandwidth{}) {
		return b
	}
	return nil
}

// attachOptions turns the capabilities and CNI_ARGS into sandnet's options.
func (c *netConf) attachOptions(containerID, ifName string, args podArgs) (sandnet.AttachOptions, error) {
	o := sandnet.AttachOptions{SandboxID: sandboxID(containerID), IfName: ifName}
	rc := c.RuntimeConfig
	for _, pm := range rc.PortMappings {
		if pm.HostPort <= 0 || pm.HostPort > 65535 || pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return o, invalidConf("portMappings: host port %d, container port %d: want 1-65535", pm.HostPort, pm.ContainerPort)
		}
		p := sandnet.PortMapping{HostPort: uint16(pm.HostPort), ContainerPort: uint16(pm.ContainerPort), Proto: strings.ToLower(pm.Protocol)}
		if p.Proto == "" {
			p.Proto = "tcp"
		}
		if pm.HostIP != "" {
			ip, err := netip.ParseAddr(pm.HostIP)
			if err != nil {
				return o, invalidConf("portMappings: hostIP %q: %v", pm.HostIP, err)
			}
			p.HostIP = ip.Unmap()
		}
		o.Ports = append(o.Ports, p)
	}
	for _, s := range rc.IPs {
		ip, err := parseIP(s)
		if err != nil {
			return o, invalidConf("ips: %v", err)
		}
		if ip.Is4() {
			o.IP = ip
		} else {
			o.IP6 = ip
		}
	}
	if rc.MAC != "" {
		mac, err := net.ParseMAC(rc.MAC)
		if err != nil {
			return o, invalidConf("mac: %v", err)
		}
		o.MAC = mac
	}
	if args.PodName != "" && checkDNSLabel(args.PodName) {
		o.Hostname = args.PodName
		if args.PodNamespace != "" && checkDNSLabel(args.PodNamespace) {
			o.Aliases = append(o.Aliases, args.PodName+"."+args.PodNamespace)
		}
	}
	for _, a := range rc.Aliases[c.Name] {
		if a != o.Hostname && checkDNSLabel(a) {
			o.Aliases = append(o.Aliases, a)
		}
	}
	dns := c.DNS.Conf
	if rc.DNS != nil {
		dns.Nameservers = append(dns.Nameservers, rc.DNS.Servers...)
		dns.Search = append(dns.Search, rc.DNS.Searches...)
		dns.Options = append(dns.Options, rc.DNS.Options...)
	}
	for _, s := range dns.Nameservers {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return o, invalidConf("dns nameservers: %v", err)
		}
		o.DNS = append(o.DNS, ip)
	}
	if dns.Domain != "" {
		o.DNSSearch = append(o.DNSSearch, dns.Domain)
	}
	o.DNSSearch = append(o.DNSSearch, dns.Search...)
	o.DNSOptions = dns.Options
	return o, nil
}

// parseIP takes "10.0.0.5" or "10.0.0.5/24" (the ips capability's form).
func parseIP(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// checkDNSLabel reports whether s can be a DNS name on the network: dot-
// separated labels of 1 to 63 letters, digits and inner '-'. Names that
// cannot (a pod name is checked by Kubernetes, an alias maybe not) are left
// out rather than failing the ADD.
//
// The plugin is a process per call: it checks names with loops, not
// regexps, whose compilation at start-up would cost every call.
func checkDNSLabel(s string) bool {
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' || strings.ContainsFunc(l, notLabelRune) {
			return false
		}
	}
	return true
}

// notLabelRune reports whether r may not appear in a DNS label.
func notLabelRune(r rune) bool { return !isLetterDigit(r) && r != '-' }

// isLetterDigit reports whether r is an ASCII letter or digit.
func isLetterDigit(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

// podArgs are the CNI_ARGS keys sandnet reads; every other key is ignored
// (IgnoreUnknown or not: runtimes send what they like).
type podArgs struct {
	PodName      string
	PodNamespace string
}

// parseArgs reads CNI_ARGS ("K=V;K2=V2"); malformed pairs are skipped.
func parseArgs(s string) podArgs {
	var a podArgs
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "K8S_POD_NAME":
			a.PodName = v
		case "K8S_POD_NAMESPACE":
			a.PodNamespace = v
		}
	}
	return a
}

// usableAsIs reports whether sandnet takes id as a sandbox ID: 1 to 64
// letters, digits, '.', '_' and '-', the first a letter or digit.
func usableAsIs(id string) bool {
	return id != "" && len(id) <= 64 && isLetterDigit(rune(id[0])) &&
		!strings.ContainsFunc(id, func(r rune) bool { return !isLetterDigit(r) && !strings.ContainsRune("._-", r) })
}

// sandboxID is the sandnet sandbox ID of a CNI container ID: the ID itself
// when sandnet takes it (64 hex digits do), else a shortened form that
// stays unique (a prefix and a hash of the whole).
func sandboxID(containerID string) string {
	if usableAsIs(containerID) {
		return containerID
	}
	sum := sha256.Sum256([]byte(containerID))
	keep := strings.Map(func(r rune) rune {
		if r < 128 && (r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return r
		}
		return '_'
	}, containerID)
	if len(keep) > 40 {
		keep = keep[:40]
	}
	return "c" + keep + "-" + hex.EncodeToString(sum[:8])
}

// dnsCapability is the dns capability's shape: the runtime's resolver
// settings for the sandbox.
type dnsCapability struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}
