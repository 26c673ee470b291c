// Package nlwrap retries netlink dumps that the kernel interrupted.
//
// A dump (list links, addresses, routes) returns netlink.ErrDumpInterrupted
// when the table changed while it was being read; the answer may then be
// inconsistent. Retrying a few times is the documented remedy.
//
// Contract: it calls the function it is given, in whatever namespace that
// function's handle is bound to; no state of its own. Safe for concurrent use.
package nlwrap
