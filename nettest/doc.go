// Package nettest is the httptest of networks: isolated network fixtures
// for Go tests, with real kernel network stacks, in one test process.
//
//	lab := nettest.NewLab(t)                   // a private host namespace and a sandnet.Host over it
//	n := lab.Network(sandnet.Network{})         // a bridge network with a free subnet
//	a := lab.Sandbox("a", n)                    // a namespace attached through the real Attach
//	b := lab.Sandbox("b", n)
//	ln, _ := a.Listen("tcp", ":80")             // sockets made inside a, usable from any goroutine
//	go http.Serve(ln, handler)
//	resp, err := b.HTTPClient().Get("http://a/") // "a" resolves to a's address
//
// A lab is removed with everything in it when the test ends, also when it
// fails or panics: sockets, endpoints (detached through sandnet), networks,
// namespaces and the state directory. Every namespace is named
// "snt-LABID-ROLE". Parallel tests each get their own lab and never see each
// other's objects; nothing happens in the machine's own network namespace.
//
// Beyond one host: Lab.Upstream is a namespace playing the outside world,
// wired to the host's default route; NewUnderlay is a switch joining several
// lab hosts (for multi-host, overlay and macvlan tests). Links misbehave on
// purpose with Sandbox.SetRate (tbf), Sandbox.SetNetem (netem; the test is
// skipped where the kernel lacks it) and Sandbox.Partition/Heal (link down
// and up); Ping, Reachable, WaitReachable and Matrix check connectivity.
//
// # Names
//
// Sandbox.Dial and HTTPClient resolve host names through Lab.Resolve: the
// lab's own sandbox names, hostnames and aliases first, then resolvers added
// with Lab.AddResolver, then the DNS servers the sandbox's endpoints got.
//
// # Root and user namespaces
//
// As root, labs are made directly (in private namespaces only). Without
// root, NewLab re-executes the test binary, running only the current test,
// as root of a new user namespace with new network and mount namespaces,
// mounts private tmpfs on /run/netns (and /run/sandnet, /etc/netns where
// they exist) and reports the child's result: a failure, or a skip whose
// message says the child passed or skipped. Main (from TestMain) instead
// runs the whole binary once in such a namespace, so results, benchmarks
// and Examples report as usual.
//
// What works in a user namespace (Linux 6.x): named namespaces, veth,
// bridge, addresses, routes, sysctls under net/, tbf, raw ICMP sockets and
// iptables-nft. Limits: nothing is reachable outside the child's network
// namespace (which is the point); /etc/netns can only be used if it exists
// on the machine (the real root owns /etc), so per-sandbox resolv.conf files
// under /etc/netns are not written there otherwise; the kernel or a security
// module may forbid unprivileged user namespaces altogether
// (kernel.unprivileged_userns_clone, user.max_user_namespaces, AppArmor's
// apparmor_restrict_unprivileged_userns), and then labs skip.
//
// # Contract
//
// A Lab made by NewLab reports failures through t and must be used from the
// test's goroutine; sockets and Ping can be used from any goroutine. No
// method depends on the calling thread's namespace: code runs inside a
// namespace only through netns.Do (Sandbox.Run).
//
// nettest is a client of the root package sandnet: it imports it (a Lab's
// Host attaches its sandboxes), and nothing below the root imports nettest.
package nettest
