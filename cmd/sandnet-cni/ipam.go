package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Delegation to an IPAM plugin, as the bridge plugin does it: the plugin
// gets sandnet's own stdin (it reads its "ipam" section) and environment.
// An IPAM plugin older than the configuration's spec version (Debian 12's
// host-local speaks up to 1.0.0) gets the configuration in the newest
// version it speaks, and its result is converted; GC and STATUS, which
// came with 1.1.0, are skipped for such a plugin (it has nothing to
// collect by the spec's terms).

// ipamConf returns stdin in a version the IPAM plugin speaks, or nil when
// it speaks none up to the configuration's (the caller skips the call).
func (c *netConf) ipamConf(ctx context.Context, stdin []byte, needs string) ([]byte, error) {
	path, err := invoke.FindInPath(c.IPAM.Type, filepath.SplitList(os.Getenv("CNI_PATH")))
	if err != nil {
		return nil, err
	}
	info, err := invoke.GetVersionInfo(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	best := ""
	for _, v := range info.SupportedVersions() {
		le, err := version.GreaterThanOrEqualTo(c.CNIVersion, v)
		if err != nil || !le {
			continue
		}
		ge, _ := version.GreaterThanOrEqualTo(v, needs)
		if !ge {
			continue
		}
		if newer, _ := version.GreaterThan(v, best); best == "" || newer {
			best = v
		}
	}
	if best == "" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(stdin, &m); err != nil {
		return nil, err
	}
	m["cniVersion"] = best
	delete(m, "prevResult")
	return json.Marshal(m)
}

// incompatible reports whether err is the spec's "incompatible version".
func incompatible(err error) bool {
	var te *types.Error
	return errors.As(err, &te) && te.Code == types.ErrIncompatibleCNIVersion
}

// delegate runs verb on the IPAM plugin: with stdin as it is, and again in
// an older version if the plugin does not speak the configuration's.
func (c *netConf) delegate(ctx context.Context, verb string, stdin []byte) (types.Result, error) {
	call := func(conf []byte) (types.Result, error) {
		switch verb {
		case "ADD":
			return invoke.DelegateAdd(ctx, c.IPAM.Type, conf, nil)
		case "DEL":
			return nil, invoke.DelegateDel(ctx, c.IPAM.Type, conf, nil)
		case "CHECK":
			return nil, invoke.DelegateCheck(ctx, c.IPAM.Type, conf, nil)
		case "GC":
			return nil, invoke.DelegateGC(ctx, c.IPAM.Type, conf, nil)
		default:
			return nil, invoke.DelegateStatus(ctx, c.IPAM.Type, conf, nil)
		}
	}
	if verb == "GC" || verb == "STATUS" {
		// An IPAM plugin from before 1.1.0 does not know the verb (and may
		// answer with anything): ask first.
		conf, err := c.ipamConf(ctx, stdin, "1.1.0")
		if err != nil || conf == nil {
			return nil, err
		}
		return call(conf)
	}
	res, err := call(stdin)
	if err == nil || !incompatible(err) {
		return res, err
	}
	needs := "0.1.0"
	if verb == "CHECK" {
		needs = "0.4.0"
	}
	older, verr := c.ipamConf(ctx, stdin, needs)
	if verr != nil {
		return nil, errors.Join(err, verr)
	}
	if older == nil {
		return nil, err
	}
	return call(older)
}
