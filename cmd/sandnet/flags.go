package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command describes one subcommand for its --help.
type command struct {
	usage    string // "attach NS --net NAME [flags]"
	summary  string
	examples string
	// min and max positional arguments (max -1: any).
	min, max int
	// dash allows "-- CMD..." after the positionals.
	dash bool
}

// flags makes the FlagSet of a subcommand, with the global flags too.
func (a *app) flags(c command) *flag.FlagSet {
	fs := flag.NewFlagSet("sandnet "+c.usage, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.globals(fs)
	fs.Usage = func() {} // the flag package calls it on every error; help is printed by parse
	if a.help == nil {
		a.help = map[*flag.FlagSet]func(){}
	}
	a.help[fs] = func() {
		fmt.Fprintf(a.stdout, "Usage: sandnet %s\n\n%s\n", c.usage, c.summary)
		fmt.Fprintf(a.stdout, "\nFlags (global flags --host-ns, --state-dir, --explain, --json work everywhere):\n")
		fs.SetOutput(a.stdout)
		fs.VisitAll(func(f *flag.Flag) {
			switch f.Name {
			case "host-ns", "state-dir", "explain", "json":
				return
			}
			name, usage := flag.UnquoteUsage(f)
			dashes := "--"
			if len(f.Name) == 1 {
				dashes = "-"
			}
			fmt.Fprintf(a.stdout, "  %s%s %s\n        %s\n", dashes, f.Name, name, usage)
		})
		fs.SetOutput(io.Discard)
		if c.examples != "" {
			fmt.Fprintf(a.stdout, "\nExamples:\n%s", c.examples)
		}
	}
	return fs
}

// parse parses args with flags allowed before, between and after the
// positional arguments (`attach NS --net X`). Everything after "--" is
// returned as rest when c.dash is set.
func (a *app) parse(fs *flag.FlagSet, c command, args []string) (pos, rest []string, err error) {
	if c.dash {
		for i, s := range args {
			if s == "--" {
				args, rest = args[:i], args[i+1:]
				break
			}
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				a.help[fs]()
				return nil, nil, err
			}
			return nil, nil, usagef("%s: %v (see sandnet %s --help)", strings.Fields(c.usage)[0], err, cmdName(c))
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < c.min || (c.max >= 0 && len(pos) > c.max) {
		return nil, nil, usagef("usage: sandnet %s (see sandnet %s --help)", c.usage, cmdName(c))
	}
	if c.dash && len(rest) == 0 && c.min > 0 && strings.Contains(c.usage, "-- CMD") {
		return nil, nil, usagef("usage: sandnet %s: give the command after --", c.usage)
	}
	return pos, rest, nil
}

// cmdName is the command words of a usage line: "net create".
func cmdName(c command) string {
	var words []string
	for _, w := range strings.Fields(c.usage) {
		if strings.ToLower(w) != w || strings.HasPrefix(w, "[") || strings.HasPrefix(w, "-") {
			break
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

// strList is a repeatable string flag (-p A -p B).
type strList []string

func (s *strList) String() string     { return strings.Join(*s, ",") }
func (s *strList) Set(v string) error { *s = append(*s, v); return nil }

// groupHelp prints the help of a command group (sandnet ns --help): each
// subcommand's usage, summary and examples.
func (a *app) groupHelp(group, summary string, cmds ...command) error {
	fmt.Fprintf(a.stdout, "Usage: sandnet %s SUBCOMMAND [ARGS] [flags]\n\n%s\n\nSubcommands:\n", group, summary)
	for _, c := range cmds {
		fmt.Fprintf(a.stdout, "\n  sandnet %s\n      %s\n", c.usage, c.summary)
	}
	fmt.Fprintf(a.stdout, "\nExamples:\n")
	for _, c := range cmds {
		fmt.Fprint(a.stdout, c.examples)
	}
	fmt.Fprintf(a.stdout, "\nRun 'sandnet %s SUBCOMMAND --help' for its flags.\n", group)
	return nil
}
