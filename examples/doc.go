// Package examples holds sandnet's teaching programs, one idea each, in the
// order of the guide (see README.md). Each is a main package in its own
// directory, run as root with `go run ./examples/NN-name`; it builds
// everything in private namespaces and removes them at the end.
//
// The test in this directory builds and runs every example it finds, checks
// that it succeeds and leaves nothing behind, and replays the commands it
// printed in a fresh lab to check they rebuild the same kernel state.
package examples
