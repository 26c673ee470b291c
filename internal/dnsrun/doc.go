// Package dnsrun runs the embedded name servers of a state directory: one
// runner at a time per directory serves, on each network's gateway
// addresses in the host namespace, every network that an endpoint needs a
// name server for. The runner is either a detached helper process (the
// running program re-executed from /proc/self/exe, see HelperMain) or a
// goroutine of the attaching process (Config.InProcess).
//
// The runner knows nothing of sandnet's records: a Source says which
// networks to serve and gives each network's names as a dns.Source;
// Records is the Source over a state directory's records, so the helper
// process needs only the state directory to serve it.
//
// Files under STATEDIR/dns:
//
//	server.lock  held (flock) by the runner for as long as it runs; a
//	             helper gets it already locked from the process that starts it
//	start.lock   taken while starting a runner, and by a runner stopping a
//	             server or deciding to stop, so a server never stops under an
//	             Attach that needs it
//	status.json  the runner's PID, the networks it serves (with their
//	             gateways) and those it could not serve, with why
//	helper.pid, helper.log   the helper process's PID and its stdout/stderr
//
// The process that starts the helper binds the network's sockets and hands
// them over with server.lock (socket activation), so its Attach returns at
// once: a query sent before the helper is ready waits in the socket. An
// Attach that finds its network in status.json (under start.lock) needs no
// probe; one that needs a network served by a running helper wakes it with
// SIGUSR1. A network's names follow its endpoint records (dns.DirSource):
// a record's change is in the next query's answer.
//
// Contract: root (CAP_NET_ADMIN to listen in the host namespace, and to
// enter it). Servers listen through netns.Do; nothing depends on the calling
// thread's namespace. A Manager is safe for concurrent use.
package dnsrun
