package sandnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/dns"
)

// TestSandboxFilesAttachDetachInterleave: an Attach of a sandbox to one
// network writing its resolv.conf while a Detach of the same sandbox from
// another network drops its use of it: the file the Attach wrote stays,
// and neither fails (the two hold the sandbox's file lock in turn).
func TestSandboxFilesAttachDetachInterleave(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	b := make([]byte, 4)
	rand.Read(b)
	dir := filepath.Join(dns.NetnsDir, "h20-files-"+hex.EncodeToString(b))
	path := filepath.Join(dir, "resolv.conf")
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := []byte("nameserver 10.0.0.1\n")
	for i := 0; i < 300; i++ {
		first := &attachTx{h: h, ep: &Endpoint{ID: "first"}}
		if err := h.writeSandboxFile(ctx, first, path, data); err != nil {
			t.Fatal(err)
		}
		second := &attachTx{h: h, ep: &Endpoint{ID: "second"}}
		var wg sync.WaitGroup
		var werr, rerr error
		wg.Add(2)
		go func() { defer wg.Done(); werr = h.writeSandboxFile(ctx, second, path, data) }()
		go func() { defer wg.Done(); rerr = h.releaseDNSFile(ctx, path, "first") }()
		wg.Wait()
		if werr != nil || rerr != nil {
			t.Fatalf("round %d: attach's write: %v; detach's release: %v", i, werr, rerr)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("round %d: the file the attach wrote is gone: %v", i, err)
		}
		if err := h.releaseDNSFile(ctx, path, "second"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("round %d: %s left after its last user: %v", i, dir, err)
		}
	}
}
