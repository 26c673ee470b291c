// Package sandnet networks Linux sandboxes (network namespaces) the way Docker
// does, step by step.
//
// A [Host] is the namespace that plays the host (the caller's by default, or
// any other: that is how tests and harnesses stay off the machine's own
// network) plus a state directory. [Host.Attach] puts a sandbox on a
// [Network] with the network's driver:
//
//   - bridge: a veth pair from the sandbox (eth0) to a bridge in the host
//     namespace, an address from the network's pool, a default route via the
//     bridge's gateway address (and NAT, DNS and published ports);
//   - host: the sandbox is the host namespace; nothing changes;
//   - none: loopback only;
//   - macvlan and overlay: see their drivers.
//
// Each step is done by a small package of its own (netns, veth, bridge, ipam,
// nat, dns, ...) that is usable alone. Attach is transactional: when a step
// fails, the steps before it are undone and one error names the step.
// [Host.Detach] undoes an attach, is idempotent and works when the sandbox
// namespace is already gone.
//
// Contract: root (CAP_NET_ADMIN, CAP_SYS_ADMIN) is needed. Nothing depends
// on the calling thread's namespace. A Host is safe for concurrent use, and
// several processes may share one state directory: addresses and records
// are guarded by file locks.
package sandnet
