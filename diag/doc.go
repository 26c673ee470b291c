// Package diag looks at a sandbox's network and says what is wrong with it:
// the guide's "find the namespace, enter it, look around, walk the
// checklist" as functions.
//
// [Inspect] describes a sandbox namespace (links, addresses, routes of every
// table, neighbours, resolv.conf, listening sockets) and, given a
// [sandnet.Host], where sandnet attached it. The result is plain data,
// JSON-serialisable, for people (cmd/sandnet prints it as a table) and for
// scripts.
//
// [Check] is the troubleshooting checklist as code: named checks, each
// pass, fail or skip with a one-line reason that says what is wrong and what
// to do. A check whose prerequisite failed is skipped and names it, so one
// broken thing gives one failure.
//
// [Topology] and [Topo.DOT] draw namespaces, veth pairs, bridges, networks
// and published ports as Graphviz DOT.
//
// Contract: root is needed (entering namespaces, raw ICMP). Nothing here
// changes the kernel: diag only reads, and sends probes (ICMP echo to the
// gateway, DNS queries to the sandbox's name servers) from inside the
// sandbox. Nothing depends on the calling thread's namespace. Functions are
// safe for concurrent use.
//
// diag is a client of the root package sandnet: it imports it (Host,
// Endpoint, Check), and nothing below the root imports diag.
package diag
