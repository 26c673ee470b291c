// Package dns gives sandboxes their name service: the resolv.conf and hosts
// files a sandbox reads, and the small name server that answers, on a
// network's gateway address, for the sandboxes of that network (Docker's
// embedded DNS, podman's aardvark-dns).
//
// Contract:
//   - Parsing and rendering (ResolvConf, Hosts) are pure functions.
//   - ReadHost reads the host's resolver configuration from the paths it is
//     given; loopback stub resolvers (systemd-resolved's 127.0.0.53) are never
//     handed to a sandbox: they are replaced by the real upstream servers.
//   - WriteFile and RemoveFile write and remove the per-sandbox files (for a
//     named namespace under /etc/netns/NAME, where `ip netns exec` bind-mounts
//     them over /etc); writing under /etc needs root.
//   - Listen binds the server's UDP and TCP sockets inside the namespace it is
//     given (root, CAP_SYS_ADMIN to enter it) and serves them from ordinary
//     goroutines; the calling thread's namespace does not matter. A Server is
//     safe for concurrent use; Close is idempotent.
//   - A Server answers only the clients it is told to (Config.Clients, and
//     Config.Interface for the arrival interface): everything else is
//     dropped unanswered. One without Upstreams forwards nothing (NXDOMAIN
//     for names that are not its network's).
package dns
