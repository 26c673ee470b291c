// Package sandnet networks Linux sandboxes (network namespaces) the way Docker
// does, step by step.
//
// A [Host] is the namespace that plays the host (the caller's by default, or
// any other: that is how tests and harnesses stay off the machine's own
// network) plus a state directory. [Host.Attach] puts a sandbox on a
// [Network] with the network's driver. The default, [DriverBridge], gives
// the sandbox a veth pair (eth0) to a bridge in the host namespace, an
// address from the network's pool and a default route via the bridge's
// gateway address (and NAT, DNS and published ports); the other drivers
// are described at their [Driver] constants.
//
// Each step is done by a small package of its own (netns, veth, bridge, ipam,
// nat, dns, ...) that is usable alone. Attach is transactional: when a step
// fails, the steps before it are undone and one error names the step.
// [Host.Detach] undoes an attach, is idempotent and works when the sandbox
// namespace is already gone.
//
// Names: on a bridge network every sandbox resolves the others by hostname,
// alias and sandbox ID (`ping NAME` works, as on a Docker user-defined
// network). Attach writes the sandbox's resolv.conf and hosts (for a named
// namespace under /etc/netns/NAME, where `ip netns exec` finds them) and
// makes sure a name server answers on the network's gateway address. By
// default ([DNSHelper]) that server runs in a small detached process per
// state dir, which is the running program itself re-executed from
// /proc/self/exe: an init function of this package recognises the
// SANDNET_DNS_HELPER environment variable and runs the helper instead of
// the program, so every program that can call Attach carries it, with
// nothing to install or call (the way netavark starts aardvark-dns, without
// a second binary). It stops by itself after the last endpoint needing it
// detaches. [HostConfig].DNS chooses in-process serving instead.
//
// Layout: each driver is one file (driver_bridge.go, driver_macvlan.go,
// ...) that owns its Network fields, its attach and detach, and its part of
// Check and Repair; driver.go holds the interface and the registry that
// everything else loops over. The state directory (records, locks, the port
// table, file reference counts) is internal/state's, on internal/statefile;
// internal/sandboxfiles writes a sandbox's resolv.conf and hosts, counting
// their users there; the name-server runner is internal/dnsrun, which
// serves what the records say and knows nothing of a Host. diag, nettest and cmd/sandnet are clients
// of this package; nothing below it imports them.
//
// Contract: root (CAP_NET_ADMIN, CAP_SYS_ADMIN) is needed. Nothing depends
// on the calling thread's namespace. A Host is safe for concurrent use, and
// several processes may share one state directory: addresses and records
// are guarded by file locks.
package sandnet
