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
//     them over /etc); writing under /etc needs root. A sandbox's files are
//     kept in NetnsHomeDir (tmpfs) with /etc/netns/NAME a link to them: one
//     inode on /etc instead of three.
//   - Listen binds the server's UDP and TCP sockets inside the namespace it is
//     given (root, CAP_SYS_ADMIN to enter it) and serves them from ordinary
//     goroutines; the calling thread's namespace does not matter. A Server is
//     safe for concurrent use; Close is idempotent.
//   - Serving UDP costs no goroutine, socket or allocation per common query:
//     one reader takes batches of queries (recvmmsg) and sends the batch's
//     answers at once (sendmmsg); an A or AAAA query about a
//     sandbox is answered from its wire form. With Config.OwnThread (a
//     process that only serves DNS) a busy reader sleeps without handing
//     its P back to the runtime, which raises GOMAXPROCS by one per such
//     server while it runs. Forwarded queries share a
//     small pool of upstream sockets per server (dialled once through
//     Config.Dial), each query under a random ID, an answer accepted only
//     for the question asked; the same loop reads the answers, between
//     its batches of queries, and sends them on in batches too (one
//     thread for both ways, as dnsmasq's).
//   - A Source is asked for the table on every query, so it must not block:
//     Static never changes; DirSource (WatchDir) follows a directory of
//     records with inotify, re-reads only the files a change names, and
//     swaps in a table built beside the current one from it and the
//     changed records (a change costs what it touches, not the directory),
//     so a query never waits for a reload and a change is in the next
//     query's answer.
//   - A Server answers only the clients it is told to (Config.Clients, and
//     Config.Interface for the arrival interface): everything else is
//     dropped unanswered. One without Upstreams forwards nothing (NXDOMAIN
//     for names that are not its network's).
package dns
