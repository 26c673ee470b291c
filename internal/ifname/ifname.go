package ifname

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/sandnet/sandnet/internal/errkind"
)

// Max is the longest interface name the kernel accepts (IFNAMSIZ - 1).
const Max = 15

// Check returns an error wrapping errkind.Invalid unless name is a name the
// kernel accepts for an interface: 1 to 15 bytes, not "." or "..", and no '/',
// ':', white space or control characters. ':' is refused too, although the
// kernel takes it, because ifconfig-era tools read it as an alias separator.
func Check(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("interface name is empty: %w", errkind.Invalid)
	case len(name) > Max:
		return fmt.Errorf("interface name %q is %d bytes, the kernel allows %d: %w", name, len(name), Max, errkind.Invalid)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is reserved: %w", name, errkind.Invalid)
	}
	for _, r := range name {
		if r <= ' ' || r == '/' || r == ':' || r == 0x7f {
			return fmt.Errorf("interface name %q contains %q, which the kernel refuses: %w", name, r, errkind.Invalid)
		}
	}
	return nil
}

// Derive makes a stable interface name: prefix followed by as many hex digits
// of the SHA-256 of id as fit in 15 bytes.
func Derive(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	return prefix + hex.EncodeToString(sum[:])[:Max-len(prefix)]
}
