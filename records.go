package sandnet

import (
	"github.com/sandnet/sandnet/internal/state"
	"github.com/sandnet/sandnet/netns"
)

// The state dir is internal/state's; these are its records of this
// package's networks and endpoints.
type (
	networkRecord  = state.NetworkRecord[Network]
	endpointRecord = state.EndpointRecord[Endpoint]
	stateStore     = state.Store[Network, Endpoint]
)

const (
	stateVersion   = state.Version
	stateAttaching = state.Attaching
	stateAttached  = state.Attached
)

// ErrStateVersion is returned for a state dir or record written by a newer
// sandnet; it is never overwritten.
var ErrStateVersion = state.ErrVersion

// stale says why record r no longer stands for a working endpoint: its
// attach never finished, or its sandbox namespace is gone; "" if neither.
// Judged under the network's exclusive lock, an unfinished attach is one
// that died.
func stale(r *endpointRecord) string {
	switch {
	case r.State != stateAttached:
		return "attach did not finish"
	case !netns.Alive(r.Endpoint.NetNS, r.Endpoint.NetNSInode):
		return "sandbox namespace is gone"
	}
	return ""
}
