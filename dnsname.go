package sandnet

import (
	"context"
	"strings"
)

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

// setupDNS writes the sandbox's resolv.conf and hosts and registers its
// names with the network's resolver (issue: DNS for sandboxes).
func (h *Host) setupDNS(ctx context.Context, tx *attachTx) error { return nil }

// teardownDNS undoes setupDNS; idempotent.
func (h *Host) teardownDNS(ctx context.Context, rec *networkRecord, ep *Endpoint) error { return nil }
