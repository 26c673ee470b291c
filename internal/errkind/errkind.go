package errkind

import "errors"

var (
	// Invalid: the caller asked for something malformed (bad CIDR, name too long, ...).
	Invalid = errors.New("invalid argument")
	// Exists: the object exists already, or exists with a different definition.
	Exists = errors.New("already exists")
	// NotFound: the object is not there.
	NotFound = errors.New("not found")
	// Exhausted: a pool has nothing left to hand out.
	Exhausted = errors.New("pool exhausted")
	// InUse: the object is held by someone else (address, port, network with endpoints).
	InUse = errors.New("in use")
)
