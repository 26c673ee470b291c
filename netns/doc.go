// Package netns opens, creates and enters Linux network namespaces.
//
// A namespace is referred to by name (pinned under /run/netns, exactly as
// `ip netns add` does, so `ip netns list` and `ip netns exec` see it), by path
// (any bind mount or /proc/PID/ns/net), or by process ID. An open [NS] holds a
// file descriptor, which keeps the namespace alive while it is open.
//
// Contract:
//   - Root (CAP_SYS_ADMIN) is needed to create, delete and enter namespaces;
//     opening and inspecting one needs only permission to read its file.
//   - Nothing here depends on, or changes, the namespace of the calling thread.
//     [NS.Do] runs code inside a namespace on a fresh, locked OS thread and
//     switches back before the thread is released; if switching back fails the
//     thread is never reused (it dies with its goroutine).
//   - [NS.Netlink] gives a netlink handle bound to the namespace; it is created
//     once per NS, shared, and safe for concurrent use ([NS.RouteNetlink] a
//     lighter one, [NS.RouteSocket] a raw socket for hand-made requests).
//   - [NS.Sysctl] and [NS.ReadSysctl] enter the namespace (Do) the first time
//     they meet a key and keep its file open: later uses act on the file
//     from any thread, which stays in the namespace it was opened in.
//   - An NS is safe for concurrent use; Close it once when done.
//   - [NS.Command] runs a program through nsenter --net (the only program
//     this package runs); [NS.Start] starts one the way `ip netns exec`
//     does (private mount namespace, /etc/netns/NAME over /etc, the
//     namespace's own /sys) and runs no other program.
package netns
