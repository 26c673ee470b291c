package sandnet

import "context"

// The bridge driver's firewall steps: masquerade, forwarding, isolation and
// published ports. The nat package does the work (issue: NAT and published ports).

func (h *Host) ensureNetworkRules(ctx context.Context, rec *networkRecord) error { return nil }

func (h *Host) removeNetworkRules(ctx context.Context, rec *networkRecord) error { return nil }

func (h *Host) addEndpointRules(ctx context.Context, rec *networkRecord, ep *Endpoint, ports []PortMapping) error {
	if len(ports) > 0 {
		return invalidf("published ports are not supported yet")
	}
	return nil
}

func (h *Host) removeEndpointRules(ctx context.Context, rec *networkRecord, ep *Endpoint) error {
	return nil
}
