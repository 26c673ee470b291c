package netns

import (
	"fmt"
	"os"
	"strings"
)

// sysctlPath maps "net.ipv4.ip_forward" to its file; a key written with '/'
// ("net/ipv4/conf/eth0.50/forwarding") is taken as it is, for interface
// names that contain dots.
func sysctlPath(key string) string {
	if strings.Contains(key, "/") {
		return "/proc/sys/" + strings.TrimPrefix(key, "/")
	}
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, value string) (bool, error) {
	cur, err := readSysctl(key)
	if err != nil {
		return false, err
	}
	if cur == value {
		return false, nil
	}
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0o644); err != nil {
		return false, fmt.Errorf("writing sysctl %s=%s: %w", key, value, err)
	}
	return true, nil
}
