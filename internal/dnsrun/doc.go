// Package dnsrun runs the embedded name servers of a state directory: one
// runner at a time per directory serves, on each network's gateway
// addresses in the host namespace, every network that an endpoint needs a
// name server for. The runner is either a detached helper process (the
// running program re-executed from /proc/self/exe, see HelperMain) or a
// goroutine of the attaching process (Config.InProcess).
//
// The runner knows nothing of sandnet's records: a Source says which
// networks to serve and gives each network's names as a dns.Source, so the
// helper process needs only the state directory to serve it.
//
// Files under STATEDIR/dns:
//
//	server.lock  held (flock) by the runner for as long as it runs
//	start.lock   taken while starting a runner, and by a runner deciding to
//	             stop, so a runner never stops under an Attach that needs it
//	status.json  the runner's PID and the networks it could not serve, with why
//	helper.pid, helper.log   the helper process's PID and its stdout/stderr
//
// Contract: root (CAP_NET_ADMIN to listen in the host namespace, and to
// enter it). Servers listen through netns.Do; nothing depends on the calling
// thread's namespace. A Manager is safe for concurrent use.
package dnsrun
