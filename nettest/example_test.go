package nettest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/nettest"
)

// Two sandboxes on a bridge network exchange HTTP, in this process: the
// server's listener and the client's connections are made inside their
// namespaces. In a test, use nettest.NewLab(t) instead of Start and Close.
func Example() {
	ctx := context.Background()
	lab, err := nettest.Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()

	n := lab.Network(sandnet.Network{Name: "web", Subnet: netip.MustParsePrefix("10.40.0.0/24")})
	server := lab.Sandbox("server", n)
	client := lab.Sandbox("client", n)

	ln, err := server.Listen("tcp", ":80")
	if err != nil {
		fmt.Println(err)
		return
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", server.Addr())
	}))

	resp, err := client.HTTPClient().Get("http://server/") // the lab resolves sandbox names
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("client %s got %q\n", client.Addr(), body)
	// Output: client 10.40.0.3 got "hello from 10.40.0.2"
}

// A partition takes a sandbox's link down; Heal brings it back and
// WaitReachable waits until traffic flows again. Reachability pings every
// pair; its grid is what Matrix prints when a test's expectation fails.
func ExampleSandbox_Partition() {
	lab, err := nettest.Start(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()
	n := lab.Network(sandnet.Network{})
	a, b, c := lab.Sandbox("a", n), lab.Sandbox("b", n), lab.Sandbox("c", n)
	nettest.WaitReachable(context.Background(), a, c) // fresh links settle

	c.Partition()
	fmt.Print(nettest.Reachability(a, b, c).Grid(nil))

	c.Heal()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("healed:", nettest.WaitReachable(ctx, a, c) == nil)
	// Output:
	// (row pings column: ok = reached, -- = no reply, ! = not what the test wants)
	//     a   b   c
	// a   .   ok  --
	// b   ok  .   --
	// c   --  --  .
	// healed: true
}

// SetRate puts a token bucket on a sandbox's link; a bulk transfer through
// it runs at the limit.
func ExampleSandbox_SetRate() {
	lab, err := nettest.Start(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()
	n := lab.Network(sandnet.Network{})
	a, b := lab.Sandbox("a", n), lab.Sandbox("b", n)
	a.SetRate(20_000_000) // 20 Mbit/s each way

	ln, _ := b.Listen("tcp", ":9")
	got := make(chan float64)
	go func() {
		c, _ := ln.Accept()
		defer c.Close()
		buf := make([]byte, 64<<10)
		c.Read(buf) // the clock starts with the first bytes, after the handshake
		start := time.Now()
		m, _ := io.CopyBuffer(io.Discard, c, buf)
		got <- float64(m) * 8 / time.Since(start).Seconds()
	}()
	c, err := a.Dial(context.Background(), "tcp", "b:9")
	if err != nil {
		fmt.Println(err)
		return
	}
	io.Copy(c, io.LimitReader(zeros{}, 3<<20))
	c.Close()
	rate := <-got
	// The limit holds however busy the machine is; how close the transfer
	// comes to it from below depends on the CPU (TestRateLimit checks the band).
	fmt.Println("held to 20 Mbit/s:", rate < 24e6)
	// Output: held to 20 Mbit/s: true
}
