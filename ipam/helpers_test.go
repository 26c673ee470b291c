package ipam

import "github.com/sandnet/sandnet/internal/statefile"

// replaceFile is how the tests plant a file: the atomic write the store uses.
func replaceFile(path string, data []byte, sync bool) error {
	return statefile.Replace(path, data, sync)
}
