package main

import (
	"fmt"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/diag"
)

// parsePorts turns -p specs ("127.0.0.1:8080:80/tcp") into mappings.
func parsePorts(specs []string) ([]sandnet.PortMapping, error) {
	var all []sandnet.PortMapping
	for _, spec := range specs {
		ms, err := sandnet.ParsePort(spec)
		if err != nil {
			return nil, fmt.Errorf("-p %s: %w", spec, err)
		}
		all = append(all, ms...)
	}
	return all, nil
}

// ruleChecker is the firewall checker doctor hands to diag.Check: the
// rules the Host's own Check finds missing.
func ruleChecker(h *sandnet.Host) diag.RuleChecker { return diag.HostRules(h) }
