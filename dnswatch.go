package sandnet

import (
	"context"
	"errors"
	"fmt"
)

// EnsureNameServers starts again the name servers that endpoints use and
// that do not answer: after the DNS helper was killed, resolution stays down
// until someone does this. The CLI calls it from every command that touches
// the networks (attach, detach, net create/rm, gc, reconcile); Reconcile and
// Repair do it through Check's DNS problems too. Networks whose server
// answers cost one probe each.
func (h *Host) EnsureNameServers(ctx context.Context) error {
	var errs []error
	for _, n := range records(h.st).Networks() {
		if up, _ := h.NameServerUp(ctx, n.Name); up {
			continue
		}
		if err := h.dns.Ensure(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("restarting the name server of network %q: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// NameServerUp reports whether network's embedded name server answers (a
// probe from the host namespace), and if not, why: what runs, what to do.
// It changes nothing. A network without an embedded server is up.
func (h *Host) NameServerUp(ctx context.Context, network string) (bool, string) {
	rec, err := h.st.ReadNetwork(network)
	if err != nil {
		return false, err.Error()
	}
	n := &rec.Network
	if !h.usesEmbeddedDNS(n) {
		return true, "network " + network + " has no embedded name server"
	}
	return h.dns.Up(ctx, dnsNetwork(n))
}
