package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/sandnet/sandnet"
	"github.com/sandnet/sandnet/nat"
)

// cniError turns an error of sandnet's into the spec's error object: the
// code from what kind of error it is, the message naming the operation and
// step (as sandnet.StepError does), the whole chain as details. An error
// that is a *types.Error already (from a delegated plugin) passes as is.
func cniError(op string, err error) error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	msg := op
	var se *sandnet.StepError
	if errors.As(err, &se) {
		msg = fmt.Sprintf("%s: %s %s: %s", op, se.Op, se.Object, se.Step)
	}
	return &types.Error{Code: errorCode(err), Msg: msg, Details: err.Error()}
}

// errorCode picks the spec's code for an error of sandnet's.
func errorCode(err error) uint {
	var pc *nat.PortConflictError
	switch {
	case errors.Is(err, sandnet.ErrStateVersion):
		return errNotAvailable
	case errors.As(err, &pc), errors.Is(err, sandnet.ErrExhausted),
		errors.Is(err, context.DeadlineExceeded):
		// A host port or an address held by another sandbox, a lock held
		// too long: all clear up when others go.
		return types.ErrTryAgainLater
	case errors.Is(err, sandnet.ErrInvalid):
		return types.ErrInvalidNetworkConfig
	case errors.Is(err, sandnet.ErrExists) && !isStep(err, sandnet.StepClaim):
		// The network exists with another definition.
		return types.ErrInvalidNetworkConfig
	}
	return types.ErrInternal
}

func isStep(err error, step sandnet.Step) bool {
	var se *sandnet.StepError
	return errors.As(err, &se) && se.Step == step
}

// errNotAvailable is the spec's code 50: the plugin cannot serve requests
// now (STATUS, and an ADD or DEL that cannot open sandnet's state).
const errNotAvailable uint = 50
