package ipam

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Key identifies a lease: one address per family per (network, sandbox, interface).
// Each part is a name: non-empty, at most 255 bytes, without '/' or NUL, and not "." or "..".
type Key struct {
	Network   string `json:"network"`
	Sandbox   string `json:"sandbox"`
	Interface string `json:"interface"`
}

// String returns "network/sandbox/interface".
func (k Key) String() string {
	return k.Network + "/" + k.Sandbox + "/" + k.Interface
}

func (k Key) validate() error {
	for _, f := range [...]struct{ what, name string }{
		{"network", k.Network}, {"sandbox", k.Sandbox}, {"interface", k.Interface},
	} {
		if err := checkName(f.what, f.name); err != nil {
			return err
		}
	}
	return nil
}

// fileName is the name of the key's index file under <network>/keys/: the first
// 128 bits of SHA-256 over the three names, in hex.
func (k Key) fileName() string {
	sum := sha256.Sum256([]byte(k.Network + "\x00" + k.Sandbox + "\x00" + k.Interface))
	return hex.EncodeToString(sum[:16])
}

// Lease is the set of addresses that one key holds in one network.
type Lease struct {
	Key
	// Addrs holds one address per pool, in the order of the pools given to Allocate,
	// each with its pool's subnet prefix length (10.88.0.5/24).
	Addrs   []netip.Prefix `json:"addrs"`
	Created time.Time      `json:"created"`
}

// checkName returns an ErrInvalid error unless name can safely be a single path
// element (and so cannot escape the store's directory).
func checkName(what, name string) error {
	var problem string
	switch {
	case name == "":
		problem = "is empty"
	case len(name) > 255:
		problem = "is longer than 255 bytes"
	case name == "." || name == "..":
		problem = "is a relative directory name"
	case strings.ContainsAny(name, "/\x00"):
		problem = "contains '/' or NUL"
	default:
		return nil
	}
	return fmt.Errorf("checking %s name %q: name %s: %w", what, name, problem, ErrInvalid)
}
