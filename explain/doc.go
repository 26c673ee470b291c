// Package explain carries the "explain hook" through a context: every sandnet
// operation that changes the kernel reports the iproute2, iptables or nsenter
// command that would do the same, so a learner (or `sandnet --explain`) can see
// `ip link add ... type veth peer name eth0 netns sbx` next to what the code did.
//
// The hook costs one context lookup when nobody listens. It is called
// synchronously, from whichever goroutine runs the operation, so a hook that is
// shared by concurrent operations must be safe for concurrent use.
//
// Contract: no root, no namespace: it only carries a function through a
// context. Safe for concurrent use as far as the hook is.
package explain
