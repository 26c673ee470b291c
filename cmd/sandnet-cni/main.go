package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// specVersions are the CNI spec versions the plugin speaks; a result is
// written in the version the configuration asks for.
var specVersions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, specVersions, "sandnet: networks sandboxes the way Docker does (https://github.com/sandnet/sandnet)")
}
