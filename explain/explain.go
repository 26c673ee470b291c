// Package explain carries the "explain hook" through a context: every sandnet
// operation that changes the kernel reports the iproute2, iptables or nsenter
// command that would do the same, so a learner (or `sandnet --explain`) can see
// `ip link add ... type veth peer name eth0 netns sbx` next to what the code did.
//
// The hook costs one context lookup when nobody listens. It is called
// synchronously, from whichever goroutine runs the operation, so a hook that is
// shared by concurrent operations must be safe for concurrent use.
package explain

import (
	"context"
	"fmt"
)

// Func receives one equivalent shell command, already formatted.
type Func func(cmd string)

type key struct{}

// With returns a context whose operations report their equivalent commands to fn.
func With(ctx context.Context, fn Func) context.Context {
	return context.WithValue(ctx, key{}, fn)
}

// Enabled reports whether ctx carries a hook; callers use it to skip building
// expensive explanations.
func Enabled(ctx context.Context) bool {
	fn, _ := ctx.Value(key{}).(Func)
	return fn != nil
}

// Say reports one command, formatted like fmt.Sprintf, to the hook in ctx, if any.
func Say(ctx context.Context, format string, args ...any) {
	fn, _ := ctx.Value(key{}).(Func)
	if fn == nil {
		return
	}
	if len(args) == 0 {
		fn(format)
		return
	}
	fn(fmt.Sprintf(format, args...))
}
