// Package errkind holds the sentinel errors that every sandnet package shares,
// so that errors.Is(err, sandnet.ErrExhausted) and errors.Is(err, ipam.ErrExhausted)
// are the same test. Each public package re-exports the kinds it returns.
//
// Contract: values only; no root, no namespace, no state.
package errkind
