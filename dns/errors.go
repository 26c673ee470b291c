package dns

import "github.com/sandnet/sandnet/internal/errkind"

// Sentinel errors, shared with the rest of sandnet.
var (
	ErrInvalid  = errkind.Invalid
	ErrInUse    = errkind.InUse
	ErrNotFound = errkind.NotFound
)
