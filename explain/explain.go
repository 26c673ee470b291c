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
