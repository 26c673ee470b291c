// Command sandnet-cni is sandnet as a CNI plugin of type "sandnet", for the
// runtimes that speak the Container Network Interface: containerd and its
// CRI (Kubernetes), CRI-O, Podman's CNI backend, Nomad. Install it as
// "sandnet" in the runtime's plugin directory:
//
//	CGO_ENABLED=0 go build -ldflags=-s -o /opt/cni/bin/sandnet ./cmd/sandnet-cni
//
// CGO_ENABLED=0 makes a static binary, as the reference plugins are: the
// plugin starts once per call, and a dynamically linked one (what go build
// makes where a C compiler is installed, for the net package's resolver,
// which the plugin does not use) spends about 0.8 ms more starting the
// dynamic loader and the C library each time. Plain go build works too.
//
// It is a thin adapter over the root package: the network configuration
// (stdin) becomes a sandnet.Network, the capabilities (runtimeConfig) and
// CNI_ARGS become sandnet.AttachOptions, and each command is one call of a
// sandnet.Host over the plugin's own namespace (the node's) and the shared
// state directory (default /run/sandnet), so the library, the CLI and the
// embedded name server see what the runtime attached:
//
//   - ADD: Host.Attach (the network is created on first use), then the
//     bandwidth limits; the result in the configuration's version.
//   - DEL: detach by (network, container ID, interface) from the record;
//     idempotent, no CNI_NETNS or prevResult needed.
//   - CHECK: the prevResult against the record, then Host.Check.
//   - GC: Host.GCNetwork with the runtime's valid attachments as keep set.
//   - STATUS: Host.Ready.
//
// An "ipam" section delegates addresses to that IPAM plugin, as the bridge
// plugin does. The README's "As a CNI plugin" section lists the keys and
// shows conflists; clients.sh drives the plugin with cnitool, Podman and
// ctr in private namespaces.
//
// Contract: runs as root in the node's network namespace, one process per
// call; concurrent calls are safe, the state dir's file locks order them.
//
// Start-up counts on every call, so it is kept lean: a static binary (above);
// the firewall backend chosen on the first call is remembered in the state
// dir; names are checked with loops, not regexps compiled at start-up; the
// host's netlink handle opens only the families sandnet speaks. What is left
// of an ADD beyond the library's attach is mostly the Go runtime starting and
// code and caches (encoding/json's, for one) used for the first time.
package main
