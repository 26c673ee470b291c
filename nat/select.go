package nat

import (
	"fmt"

	"github.com/sandnet/sandnet/netns"
)

// Backend names, for New.
const (
	BackendAuto     = ""         // nftables where the kernel has it, else iptables
	BackendIPTables = "iptables" // NewIPTables
	BackendNFTables = "nftables" // NewNFTables
)

// New returns the backend named name acting in namespace ns: "iptables",
// "nftables", or "" / "auto" for nftables when ns has a working nf_tables
// with NAT (probed once, here: a table created and deleted in one
// transaction) and iptables otherwise.
func New(ns *netns.NS, name string) (Backend, error) {
	switch name {
	case BackendIPTables:
		return NewIPTables(ns), nil
	case BackendNFTables:
		return NewNFTables(ns), nil
	case BackendAuto, "auto":
		if NFTablesAvailable(ns) == nil {
			return NewNFTables(ns), nil
		}
		return NewIPTables(ns), nil
	}
	return nil, fmt.Errorf("firewall backend %q: want iptables, nftables or auto: %w", name, ErrInvalid)
}

// Name is the name of a backend made by this package ("iptables",
// "nftables"), or "" for another.
func Name(b Backend) string {
	switch b.(type) {
	case *IPTables:
		return BackendIPTables
	case *NFTables:
		return BackendNFTables
	}
	return ""
}
