package diag

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/sandnet/sandnet/netns"
)

// ResolvConf is the resolver configuration a program in the sandbox gets.
type ResolvConf struct {
	// Path is the file read: /etc/netns/NAME/resolv.conf when it exists
	// (what `ip netns exec NAME` bind-mounts over /etc/resolv.conf), else
	// /etc/resolv.conf. Missing is true when that file does not exist.
	Path        string       `json:"path"`
	Missing     bool         `json:"missing,omitempty"`
	Nameservers []netip.Addr `json:"nameservers,omitempty"`
	Search      []string     `json:"search,omitempty"`
	Options     []string     `json:"options,omitempty"`
}

// EtcNetns is where `ip netns exec` finds per-namespace /etc files.
const EtcNetns = "/etc/netns"

// ResolvConfPath is the resolv.conf `ip netns exec` would use for sb.
func ResolvConfPath(sb *netns.NS) string {
	if sb.Name() != "" {
		p := filepath.Join(EtcNetns, sb.Name(), "resolv.conf")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/etc/resolv.conf"
}

// ReadResolvConf reads and parses the resolv.conf of sb (see ResolvConfPath).
// A missing file is reported in the result, not as an error.
func ReadResolvConf(sb *netns.NS) (ResolvConf, error) {
	rc := ResolvConf{Path: ResolvConfPath(sb)}
	b, err := os.ReadFile(rc.Path)
	if errors.Is(err, os.ErrNotExist) {
		rc.Missing = true
		return rc, nil
	}
	if err != nil {
		return rc, err
	}
	parseResolvConf(&rc, b)
	return rc, nil
}

func parseResolvConf(rc *ResolvConf, b []byte) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				// Drop a zone (fe80::1%eth0): diag reports it without.
				if a, err := netip.ParseAddr(strings.SplitN(f[1], "%", 2)[0]); err == nil {
					rc.Nameservers = append(rc.Nameservers, a.Unmap())
				}
			}
		case "search", "domain":
			rc.Search = append(rc.Search, f[1:]...)
		case "options":
			rc.Options = append(rc.Options, f[1:]...)
		}
	}
}

func (rc ResolvConf) String() string {
	if rc.Missing {
		return fmt.Sprintf("%s (missing)", rc.Path)
	}
	return rc.Path
}
