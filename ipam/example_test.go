package ipam_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"

	"github.com/sandnet/sandnet/ipam"
)

func Example() {
	dir, err := os.MkdirTemp("", "ipam-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := ipam.Open(dir) // sandnet uses /run/sandnet/ipam
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	pools := []ipam.Pool{
		{Subnet: netip.MustParsePrefix("10.88.0.0/24"), Gateway: netip.MustParseAddr("10.88.0.1")},
		{Subnet: netip.MustParsePrefix("fd00:88::/64"), Gateway: netip.MustParseAddr("fd00:88::1")},
	}
	web := ipam.Key{Network: "n1", Sandbox: "web", Interface: "eth0"}
	db := ipam.Key{Network: "n1", Sandbox: "db", Interface: "eth0"}

	lease, err := store.Allocate(ctx, pools, web)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(lease.Key, lease.Addrs)

	// A static IPv4 address, and any IPv6 one.
	lease, err = store.Allocate(ctx, pools, db, netip.MustParseAddr("10.88.0.10"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(lease.Key, lease.Addrs)

	if err := store.Release(ctx, web); err != nil {
		log.Fatal(err)
	}
	leases, err := store.List("n1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(leases), "lease left")

	// Output:
	// n1/web/eth0 [10.88.0.2/24 fd00:88::2/64]
	// n1/db/eth0 [10.88.0.10/24 fd00:88::3/64]
	// 1 lease left
}
