package main

import (
	"encoding/json"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sandnet/sandnet"
)

// warmJSON fills encoding/json's per-type caches for what an ADD decodes
// and encodes after the configuration: the network's record, the endpoint's
// record (written twice) and the result. The plugin is a new process per
// call, so these caches start empty every time, and building them (the
// types' fields, their encoders) is a good part of the CPU an ADD spends
// beyond the library's own. Run on its own goroutine while the main one
// parses the configuration and opens the host, it is done, on the other
// CPU, before the attach needs it. It changes nothing else.
func warmJSON() {
	var n sandnet.Network
	json.Unmarshal([]byte(`{"name":"warm"}`), &n)
	json.Marshal(&sandnet.Endpoint{Ports: []sandnet.PortMapping{{}}, Routes: []sandnet.Route{{}}})
	json.Marshal(&current.Result{
		Interfaces: []*current.Interface{{}},
		IPs:        []*current.IPConfig{{Address: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(8, 32)}}},
	})
}
