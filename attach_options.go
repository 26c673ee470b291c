package sandnet

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/ifname"
)

// AttachOptions says how to attach one sandbox. Zero values mean defaults.
type AttachOptions struct {
	// SandboxID identifies the sandbox on the network (a container ID). Default:
	// the namespace's name, else "ns-INODE".
	SandboxID string
	// IfName is the interface name inside the sandbox; default "eth0".
	IfName string
	// IP and IP6 ask for static addresses; they must be free and in the pool.
	IP  netip.Addr
	IP6 netip.Addr
	// MAC sets the sandbox interface's MAC; default: derived from the IPv4
	// address (02:42:a:b:c:d, as Docker does), so a reused address keeps its MAC.
	MAC net.HardwareAddr
	// Hostname is the sandbox's DNS name on the network; Aliases are more names.
	Hostname string
	Aliases  []string
	// Ports are published on the host (bridge driver).
	Ports []PortMapping
	// DNS overrides the name servers written to the sandbox's resolv.conf;
	// DNSSearch and DNSOptions add search domains and options.
	DNS        []netip.Addr
	DNSSearch  []string
	DNSOptions []string
	// ResolvConfPath and HostsPath, when set, are written too (a container
	// rootfs's /etc/resolv.conf and /etc/hosts), besides /etc/netns/NAME/.
	ResolvConfPath string
	HostsPath      string
	// ExtraHosts are more "NAME ADDR" lines for the sandbox's hosts file.
	ExtraHosts map[string]netip.Addr
}

// checkOptions validates the options of an attach: names, addresses and
// what goes into the sandbox's files.
func checkOptions(network string, o *AttachOptions) error {
	if err := checkName("sandbox", o.SandboxID); err != nil {
		return err
	}
	if err := ifname.Check(o.IfName); err != nil {
		return err
	}
	if o.IP.IsValid() && !o.IP.Is4() {
		return invalidf("static IP %s is not IPv4 (use IP6)", o.IP)
	}
	if o.IP6.IsValid() && (!o.IP6.Is6() || o.IP6.Is4In6()) {
		return invalidf("static IP6 %s is not IPv6", o.IP6)
	}
	if o.MAC != nil && (len(o.MAC) != 6 || o.MAC[0]&1 == 1) {
		return invalidf("MAC %s is not a unicast Ethernet address", o.MAC)
	}
	for _, name := range append([]string{o.Hostname}, o.Aliases...) {
		if name != "" {
			if err := dns.CheckName(name); err != nil {
				return err
			}
		}
	}
	return checkFileOptions(o)
}

// checkFileOptions validates what AttachOptions writes into the sandbox's
// resolv.conf and hosts files: only plain names and addresses get through.
func checkFileOptions(o *AttachOptions) error {
	if err := dns.CheckResolvConf(o.DNS, o.DNSSearch, o.DNSOptions); err != nil {
		return err
	}
	for name, a := range o.ExtraHosts {
		if err := dns.CheckName(name); err != nil {
			return err
		}
		if !a.IsValid() {
			return invalidf("extra host %q has no address", name)
		}
	}
	for _, p := range []string{o.ResolvConfPath, o.HostsPath} {
		if p != "" && (!filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsAny(p, "\x00\n\r")) {
			return invalidf("file path %q: an absolute, clean path, please", p)
		}
	}
	return nil
}
