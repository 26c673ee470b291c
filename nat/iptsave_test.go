package nat

import "github.com/sandnet/sandnet/internal/iptsave"

// commentOf is how the tests name the --comment reader, which is iptsave's.
var commentOf = iptsave.Comment
