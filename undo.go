package sandnet

import (
	"context"
	"errors"
)

// undoStack collects the inverse of each step done so far; run undoes them
// in reverse order, best effort, even when ctx is already cancelled.
type undoStack []func(context.Context) error

func (u *undoStack) push(f func(context.Context) error) { *u = append(*u, f) }

func (u undoStack) run(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		errs = append(errs, u[i](ctx))
	}
	return errors.Join(errs...)
}
