package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/sandnet/sandnet"
)

var (
	repairCmd = command{
		usage:   "repair NS [--net NAME]",
		summary: "Check the sandbox NS's endpoints (on network NAME, or all) against what sandnet recorded and put back what is missing: veths, addresses, routes, bridge, rules, lease, port table, name server. Prints what was missing.",
		min:     1, max: 1,
		examples: "  sandnet --host-ns lab repair sbx1\n",
	}
	reconcileCmd = command{
		usage:    "reconcile",
		summary:  "Repair every network and endpoint of the host (e.g. after iptables -F or a firewall reload); endpoints whose namespace is gone are left to gc.",
		max:      0,
		examples: "  sandnet --host-ns lab reconcile\n",
	}
)

func (a *app) repair(ctx context.Context, args []string) error {
	fs := a.flags(repairCmd)
	network := fs.String("net", "", "only the endpoint on network `NAME`")
	pos, _, err := a.parse(fs, repairCmd, args)
	if err != nil {
		return err
	}
	sb, h, closeBoth, err := a.sandboxAndHost(ctx, pos[0])
	if err != nil {
		return err
	}
	defer closeBoth()
	eps, err := h.EndpointsOf(sb)
	if err != nil {
		return err
	}
	var reps []sandnet.CheckReport
	var errs []error
	for _, ep := range eps {
		if *network != "" && ep.Network != *network {
			continue
		}
		rep, err := h.Repair(ctx, ep)
		reps = append(reps, rep)
		errs = append(errs, err)
	}
	if len(reps) == 0 {
		return fmt.Errorf("sandbox %s has no endpoint to repair: %w", pos[0], sandnet.ErrNotFound)
	}
	if a.json {
		if err := a.printJSON(reps); err != nil {
			return err
		}
	} else {
		for _, r := range reps {
			a.printCheck(r)
		}
	}
	return errors.Join(errs...)
}

func (a *app) printCheck(r sandnet.CheckReport) {
	who := "network " + r.Network
	if r.Endpoint != "" {
		who = fmt.Sprintf("sandbox %s on network %s", r.Sandbox, r.Network)
	}
	if r.OK() {
		fmt.Fprintf(a.stdout, "%s: whole\n", who)
		return
	}
	for _, p := range r.Problems {
		fmt.Fprintf(a.stdout, "%s: repaired %s\n", who, p)
	}
}

func (a *app) reconcile(ctx context.Context, args []string) error {
	return hostReport(a, ctx, reconcileCmd, args, (*sandnet.Host).Reconcile, func(rep sandnet.ReconcileReport, err error) {
		for _, r := range rep.Repaired {
			a.printCheck(r)
		}
		for _, s := range rep.Skipped {
			fmt.Fprintln(a.stdout, "skipped", s, "(see sandnet gc)")
		}
		if len(rep.Repaired) == 0 && err == nil {
			fmt.Fprintln(a.stdout, "nothing to repair")
		}
	})
}
