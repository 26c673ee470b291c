package veth_test

import (
	"context"
	"fmt"

	"github.com/sandnet/sandnet/netns"
	"github.com/sandnet/sandnet/veth"
)

// Make a pair from the namespace "lab" into the sandbox "sbx1", as
// ip -n lab link add snv1 up type veth peer name eth0 netns sbx1 does, then
// take it out again without waiting for the kernel to free it.
func ExampleUnregister() {
	ctx := context.Background()
	lab, err := netns.Open("lab")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()
	sbx, err := netns.Open("sbx1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sbx.Close()
	if _, err := veth.Create(ctx, lab, veth.Pair{Name: "snv1", PeerNS: sbx, Up: true}); err != nil {
		fmt.Println(err)
		return
	}
	done, err := veth.Unregister(ctx, lab, "snv1")
	if err != nil {
		fmt.Println(err)
		return
	}
	// snv1 and sbx1's eth0 are gone now: the names are free for the next
	// pair. The kernel frees the devices after a grace period.
	<-done
}
