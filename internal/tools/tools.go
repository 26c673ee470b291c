// Package tools knows the programs sandnet's tests and examples may run
// (ping, dig, iptables, nft, conntrack, dot...) and the Debian package of
// each, so a missing one is reported with how to install it. The library
// itself needs none of them on its default path.
package tools

import (
	"fmt"
	"os/exec"
	"strings"
)

// Installed reports whether program name is on PATH.
func Installed(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// Package names the Debian package that installs program name.
func Package(name string) string {
	if strings.HasPrefix(name, "iptables") || strings.HasPrefix(name, "ip6tables") {
		return "iptables"
	}
	if p, ok := packages[name]; ok {
		return p
	}
	return name
}

// NotFound is the one line that says a program is missing and how to get
// it: "iptables not found (apt-get install iptables)".
func NotFound(name string) string {
	return fmt.Sprintf("%s not found (apt-get install %s)", name, Package(name))
}

var packages = map[string]string{
	"nft": "nftables", "ping": "iputils-ping", "dig": "dnsutils", "nslookup": "dnsutils",
	"conntrack": "conntrack", "dot": "graphviz", "tcpdump": "tcpdump", "dnsmasq": "dnsmasq-base",
	"ip": "iproute2", "ss": "iproute2", "tc": "iproute2", "bridge": "iproute2",
	"nsenter": "util-linux", "unshare": "util-linux", "runuser": "util-linux",
	"getent": "libc-bin", "useradd": "passwd", "sysctl": "procps", "jq": "jq",
}

// Optional are the programs a new machine lacks that sandnet's examples
// and tests can use (/work/shared/tools/fresh hides exactly these).
var Optional = []string{"ping", "dig", "iptables", "ip6tables", "iptables-save", "ip6tables-save", "nft", "conntrack", "dot", "tcpdump", "dnsmasq", "jq"}
