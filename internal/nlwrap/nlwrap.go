package nlwrap

import (
	"errors"

	"github.com/vishvananda/netlink"
)

const attempts = 5

// Retry calls dump until it returns something other than ErrDumpInterrupted,
// at most a few times; the last answer is returned as it is.
func Retry[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range attempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
