package main

import (
	"context"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sandnet/sandnet/netns"
)

// TestDNSNames: with the embedded name server on (the default), the pod
// name from CNI_ARGS, pod.namespace and the runtime's aliases resolve on the
// network's gateway, from another sandbox of the network.
func TestDNSNames(t *testing.T) {
	n := newNode(t, "dns")
	conf := n.conf(map[string]any{"subnet": "10.80.0.0/24", "capabilities": map[string]bool{"aliases": true}})
	delete(conf, "dns")
	l := n.list("dnsnet", "1.0.0", conf)
	_, web := n.sandbox("web")
	web.CapabilityArgs = map[string]any{"aliases": map[string][]string{"dnsnet": {"www"}}}
	n.add(l, web)
	cli, rt := n.sandbox("cli")
	n.add(l, rt)
	for _, name := range []string{"web", "web.default", "www"} {
		if got := lookupA(t, cli, "10.80.0.1:53", name); got != "10.80.0.2" {
			t.Errorf("%s: %q, want 10.80.0.2", name, got)
		}
	}
}

// lookupA asks server from inside ns for name's address, retrying while the
// name server (a helper process the first ADD started) comes up.
func lookupA(t *testing.T, ns *netns.NS, server, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	var last error
	for ctx.Err() == nil {
		var r *mdns.Msg
		err := ns.Do(func() (err error) {
			c := &mdns.Client{Timeout: time.Second}
			r, _, err = c.ExchangeContext(ctx, m, server)
			return err
		})
		if err == nil {
			for _, rr := range r.Answer {
				if a, ok := rr.(*mdns.A); ok {
					return a.A.String()
				}
			}
			return mdns.RcodeToString[r.Rcode]
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("no answer for %s from %s: %v", name, server, last)
	return ""
}
