// Package sandboxfiles writes the resolv.conf and hosts of a sandbox's
// endpoint and removes them again, counting which endpoints use each file
// that sandnet owns (those under /etc/netns/NAME, shared by the endpoints
// of one sandbox on several networks), so the last endpoint to go removes
// it. A file the caller names elsewhere (in a container's rootfs) is
// written but never counted nor removed, as Docker leaves a container's
// resolv.conf.
//
// The counts live in the state directory (Refs, which internal/state's
// Store satisfies); the files are written with the dns package
// (dns.WriteFile, dns.WriteFiles, dns.RemoveFile).
//
// Contract: plain file system calls, no namespace entered, no goroutine
// started; writing under /etc needs root. Safe for concurrent use as far
// as Refs is: each count and the write or removal it goes with are made
// holding the lock of the sandbox's directory.
package sandboxfiles
