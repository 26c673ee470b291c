package sandnet

import (
	"fmt"

	"github.com/sandnet/sandnet/internal/errkind"
)

// Errors callers can test with errors.Is. The same values are returned by the
// lower-level packages (ipam.ErrExhausted is ErrExhausted, and so on).
var (
	// ErrInvalid: malformed input (bad CIDR, gateway outside the subnet, name too long...).
	ErrInvalid = errkind.Invalid
	// ErrExists: a conflict: the object exists, or exists with another definition.
	ErrExists = errkind.Exists
	// ErrNotFound: no such network, endpoint or namespace.
	ErrNotFound = errkind.NotFound
	// ErrExhausted: the network's address pool is full.
	ErrExhausted = errkind.Exhausted
	// ErrInUse: held by someone else: an address, a host port, a network with endpoints.
	ErrInUse = errkind.InUse
)

// StepError says which step of an operation failed, on which object.
// Unwrap gives the cause, so errors.Is(err, ErrExhausted) still works.
type StepError struct {
	Op     string // "attach", "detach", "create network"
	Step   Step   // StepAddress, StepLink...
	Object string // what the operation was about: "sandbox sbx1 on network n1"
	Err    error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("%s %s: %s: %v", e.Op, e.Object, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrInvalid)...)
}
