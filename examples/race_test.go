//go:build race

package examples_test

// Under `go test -race` the examples are built with the race detector too.
func init() { buildFlags = append(buildFlags, "-race") }
