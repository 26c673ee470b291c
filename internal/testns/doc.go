// Package testns gives sandnet's own tests private namespaces on the real
// kernel, each removed in t.Cleanup, so no test touches the machine's own
// network namespace. Names start with "snt-", so leftovers are recognisable.
//
// Contract: needs root (it creates namespaces, mounts under /run/netns).
// Every namespace it makes is private to the test and removed in
// t.Cleanup; the caller's own namespace is never entered for long nor
// changed. Safe for use from parallel tests.
package testns
