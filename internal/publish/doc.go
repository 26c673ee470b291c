// Package publish publishes a bridge network's sandbox ports on the host:
// it claims the host ports in the port table (internal/state, through the
// Table interface), checks them against the network (nat.Validate), turns
// the bridge's route_localnet on while a port answers on 127.0.0.1, and
// has the firewall backend add the endpoint's DNAT rules; Remove undoes
// it. It is the root package's bridge driver's "published ports" step,
// with nothing of a Host.
//
// Contract: needs root (CAP_NET_ADMIN in the host namespace). Acts only in
// the namespace it is given (Publisher.NS, the same as the backend's),
// never in the caller's. A Publisher is a value over shared parts; it is
// safe for concurrent use as far as they are (the port table locks itself,
// the backends are safe for concurrent use). Add leaves nothing behind
// when it fails; Remove is idempotent.
package publish
