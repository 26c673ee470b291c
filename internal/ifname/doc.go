// Package ifname validates and derives Linux interface names.
//
// Contract: pure functions of their arguments; no root, no namespace.
package ifname
