package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/sandnet/sandnet/netns"
)

var (
	nsAddCmd = command{usage: "ns add NAME", summary: "Create a named network namespace, pinned under /run/netns (like ip netns add).", min: 1, max: 1,
		examples: "  sandnet ns add sbx1\n  sandnet --explain ns add sbx1     # shows: ip netns add sbx1\n"}
	nsDelCmd = command{usage: "ns del NAME", summary: "Delete a named namespace (like ip netns del). Deleting one that is not there is not an error.", min: 1, max: 1,
		examples: "  sandnet ns del sbx1\n"}
	nsLsCmd = command{usage: "ns ls", summary: "List the named namespaces with their inode (what ls -l /proc/PID/ns/net shows).", max: 0,
		examples: "  sandnet ns ls\n  sandnet ns ls --json\n"}
	nsExecCmd = command{usage: "ns exec NS -- CMD [ARGS...]", summary: "Run a command inside a namespace, as ip netns exec NAME does: in a private mount namespace where /etc/netns/NAME/* (the sandbox's resolv.conf and hosts) is bind-mounted over /etc and /sys shows the namespace's own devices, so ping NAME, getent hosts NAME and curl http://NAME/ resolve the network's names. NS is a name, a path or pid:PID. Stdin, stdout and stderr are passed through, signals forwarded; the exit status is CMD's.", min: 1, max: 1, dash: true,
		examples: "  sandnet ns exec sbx1 -- ip addr\n  sandnet ns exec pid:4242 -- ss -lnt     # the namespace of process 4242\n"}
)

func (a *app) ns(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("ns: give add, del, ls or exec (see sandnet ns --help)")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		return a.groupHelp("ns", "Named network namespaces, as ip netns manages them.", nsAddCmd, nsDelCmd, nsLsCmd, nsExecCmd)
	case "add":
		pos, _, err := a.parse(a.flags(nsAddCmd), nsAddCmd, args[1:])
		if err != nil {
			return err
		}
		ns, err := netns.Create(ctx, pos[0])
		if err != nil {
			return err
		}
		defer ns.Close()
		if a.json {
			return a.printJSON(nsInfo{Name: ns.Name(), Path: ns.Path(), Inode: ns.Inode()})
		}
		fmt.Fprintf(a.stdout, "%s net:[%d]\n", ns.Name(), ns.Inode())
		return nil
	case "del", "rm", "delete":
		pos, _, err := a.parse(a.flags(nsDelCmd), nsDelCmd, args[1:])
		if err != nil {
			return err
		}
		return netns.Delete(ctx, pos[0])
	case "ls", "list":
		if _, _, err := a.parse(a.flags(nsLsCmd), nsLsCmd, args[1:]); err != nil {
			return err
		}
		names, err := netns.List()
		if err != nil {
			return err
		}
		infos := []nsInfo{}
		for _, n := range names {
			info := nsInfo{Name: n, Path: netns.Dir + "/" + n}
			if ns, err := netns.OpenName(n); err == nil {
				info.Inode = ns.Inode()
				ns.Close()
			}
			infos = append(infos, info)
		}
		if a.json {
			return a.printJSON(infos)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tNETNS")
		for _, i := range infos {
			fmt.Fprintf(tw, "%s\tnet:[%d]\n", i.Name, i.Inode)
		}
		return tw.Flush()
	case "exec":
		pos, rest, err := a.parse(a.flags(nsExecCmd), nsExecCmd, args[1:])
		if err != nil {
			return err
		}
		ns, err := netns.Open(pos[0])
		if err != nil {
			return err
		}
		defer ns.Close()
		return a.runInside(ns, rest)
	}
	return usagef("ns: unknown subcommand %q: give add, del, ls or exec", args[0])
}

type nsInfo struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Inode uint64 `json:"inode"`
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
