package netns

import "fmt"

// checkNewName is checkName for the names Create and Delete take: a safe
// alphabet (letters, digits, '.', '_', '-', not starting with '-' or '.'),
// so a name never carries spaces, newlines or shell metacharacters into
// `ip netns` output or the commands sandnet explains. Open still takes any
// name, so a namespace made by another tool can be used.
func checkNewName(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || (i > 0 && (r == '-' || r == '.'))
		if !ok {
			return fmt.Errorf("namespace name %q: use letters, digits, '.', '_' or '-' (not first): %w", name, ErrInvalid)
		}
	}
	return nil
}
