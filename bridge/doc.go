// Package bridge ensures Linux bridges and their ports: the virtual switch
// that a network's sandboxes plug their host-side veths into; the port
// flags (hairpin, isolated, proxy_arp_wifi), static FDB entries and the
// multicast querier with which a bridge answers address resolution instead
// of flooding it (proxy.go, querier.go; answer.go: Answer and Forget per
// sandbox, AnswerSandbox with the sandbox's own gateway entries, and a View
// of a bridge's tables read once to check many ports: View.CheckAnswer,
// View.CheckGateways, CheckPort; CheckDevice and CheckMulticastQuerier
// check the bridge itself);
// the settings a bridge network needs of its bridge and ports (settings.go:
// route_localnet, the hairpin or isolated flag bridged netfilter calls for).
//
// Contract: needs root (CAP_NET_ADMIN). Acts only in the namespace passed in.
// Every call is idempotent: Ensure adopts a bridge that exists, address and
// port changes that are already in place succeed. Safe for concurrent use.
package bridge
