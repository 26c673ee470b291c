package netns

import "strings"

// sysctlPath maps "net.ipv4.ip_forward" to its file; a key written with '/'
// ("net/ipv4/conf/eth0.50/forwarding") is taken as it is, for interface
// names that contain dots.
func sysctlPath(key string) string {
	if strings.Contains(key, "/") {
		return "/proc/sys/" + strings.TrimPrefix(key, "/")
	}
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}
