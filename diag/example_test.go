package diag_test

import (
	"context"
	"fmt"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/diag"
	"github.com/sandnet/sandnet/netns"
)

// Walk the checklist for a sandbox attached by a Host over the lab
// namespace "lab", and print what fails with what to do about it.
func ExampleCheck() {
	ctx := context.Background()
	sb, err := netns.Open("sbx1") // or "/proc/4242/ns/net", or "pid:4242"
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sb.Close()
	host, err := sandnet.NewHost(ctx, sandnet.HostConfig{NetNS: "lab"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer host.Close()
	for _, r := range diag.Check(ctx, sb, diag.CheckOptions{Host: host, ResolveName: "web"}) {
		if r.Status == diag.Fail {
			fmt.Printf("%s: %s\n", r.Name, r.Reason) // e.g. "link-up: eth0 is down: ip -n sbx1 link set eth0 up"
		}
	}
}

// Inspect a process's namespace, the way `ls -l /proc/PID/ns/net` and
// `nsenter -t PID -n ip addr` do.
func ExampleInspect() {
	sb, err := netns.Open("pid:4242")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sb.Close()
	r, err := diag.Inspect(context.Background(), sb, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("net:[%d]\n", r.NetNS.Inode)
	for _, a := range r.Addresses {
		fmt.Println(a.Link, a.Prefix)
	}
}
