package dnsrun

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/dns"
	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
)

// The helper is the running program itself, re-executed (from
// /proc/self/exe) with these variables set. An init function of the root
// package turns such a process into the helper (HelperMain) before main (or
// a test binary's TestMain) runs, so every program that can call Attach
// contains the helper, with no hook to call and no second binary to install.
const (
	envHelper    = "SANDNET_DNS_HELPER" // the state dir
	envNetNS     = "SANDNET_DNS_NETNS"  // the host namespace's path, as the attacher saw it (fd 3 is the namespace)
	envNetNSIno  = "SANDNET_DNS_NETNS_INODE"
	envResolv    = "SANDNET_DNS_RESOLV_CONF"
	envResolved  = "SANDNET_DNS_RESOLVED_CONF"
	envUpstreams = "SANDNET_DNS_UPSTREAMS" // comma-separated ADDR:PORT
	envDebug     = "SANDNET_DNS_DEBUG"
	envLockFD    = "SANDNET_DNS_LOCK_FD" // server.lock, locked for the helper by the process that started it
	envSockets   = "SANDNET_DNS_SOCKETS" // ADDR:PORT=UDPFD,TCPFD;... bound for the helper by that process
)

// HelperDir returns the state dir this process is to serve as the helper,
// or "" when it is not the helper.
func HelperDir() string { return os.Getenv(envHelper) }

// ensureHelper starts the helper process for the state dir unless a runner
// holds server.lock; the caller holds start.lock. A helper it starts gets
// server.lock (never free in between, so no second helper starts) and
// network n's sockets, bound here: started reports that, and then nobody
// needs to wait for the helper to be ready.
func (m *Manager) ensureHelper(n Network) (started bool, err error) {
	lock, free, err := statefile.TryAcquire(filepath.Join(m.cfg.dir(), "server.lock"))
	if err != nil {
		return false, err
	}
	if !free {
		// A runner serves the state dir: have it sync now rather than at
		// its next poll (an in-process runner of another process polls).
		m.wakeHelper()
		return false, nil
	}
	defer lock.Release() // the helper has its own copy of the descriptor
	var socks []*dns.Sockets
	defer func() {
		for _, so := range socks {
			so.Close() // the helper has its own copies
		}
	}()
	for _, gw := range []netip.Addr{n.Gateway, n.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		so, err := dns.Bind(m.cfg.NS, gw, 53)
		if err != nil {
			return false, fmt.Errorf("starting the name server of network %q: %w", n.Name, err)
		}
		socks = append(socks, so)
	}
	return true, m.spawnHelper(lock.File(), socks)
}

// wakeHelper asks the state dir's helper process to sync now (SIGUSR1), if
// it runs and is the helper: the PID is checked against its command line,
// as a PID file can outlive its process.
//
// Only a helper that has written status.json is signalled: it set up its
// handler for SIGUSR1 before, and one still starting (whose PID its starter
// wrote already) would die of the signal. That one syncs on its own soon.
func (m *Manager) wakeHelper() {
	pid := m.HelperPID()
	if pid <= 0 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.HasPrefix(string(cmdline), helperArg0+"\x00"+m.cfg.Dir+"\x00") {
		return
	}
	var st status
	if b, err := statefile.Read(filepath.Join(m.cfg.dir(), "status.json")); err != nil || json.Unmarshal(b, &st) != nil || st.PID != pid {
		return
	}
	unix.Kill(pid, unix.SIGUSR1)
}

// helperArg0 is the helper's argv[0], what ps shows.
const helperArg0 = "sandnet-dns"

// spawnHelper starts the helper: a new session (so it outlives the
// attacher's terminal and process group), stdin from /dev/null, output to
// helper.log in the state dir, the host namespace passed as fd 3, the
// locked server.lock as fd 4, and the sockets bound for it after them.
func (m *Manager) spawnHelper(lock *os.File, socks []*dns.Sockets) error {
	c := &m.cfg
	logf, err := os.OpenFile(filepath.Join(c.dir(), "helper.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("starting the DNS helper: %w", err)
	}
	defer logf.Close()
	fd, err := unix.Dup(c.NS.Fd())
	if err != nil {
		return fmt.Errorf("starting the DNS helper: %w", err)
	}
	nsf := os.NewFile(uintptr(fd), "netns")
	defer nsf.Close()

	env := []string{
		envHelper + "=" + c.Dir,
		envNetNS + "=" + c.NS.Path(),
		envNetNSIno + "=" + strconv.FormatUint(c.NS.Inode(), 10),
		envResolv + "=" + c.Files.ResolvConf,
		envResolved + "=" + c.Files.ResolvedConf,
	}
	var ups []string
	for _, u := range c.Upstreams {
		ups = append(ups, u.String())
	}
	env = append(env, envUpstreams+"="+strings.Join(ups, ","))
	files := []*os.File{nsf, lock} // fds 3 and 4
	env = append(env, envLockFD+"=4")
	var inherit []string
	for _, so := range socks {
		// ExtraFiles[i] is fd 3+i in the helper.
		inherit = append(inherit, fmt.Sprintf("%s=%d,%d", so.Addr, 3+len(files), 4+len(files)))
		files = append(files, so.UDP, so.TCP)
	}
	env = append(env, envSockets+"="+strings.Join(inherit, ";"))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SANDNET_DNS_") || strings.HasPrefix(kv, envDebug+"=") {
			env = append(env, kv)
		}
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{helperArg0, c.Dir},
		Env:         env,
		Dir:         "/",
		Stdout:      logf,
		Stderr:      logf,
		ExtraFiles:  files,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the DNS helper (/proc/self/exe): %w", err)
	}
	c.Logger.Debug("dns: started helper", "pid", cmd.Process.Pid, "stateDir", c.Dir)
	// helper.pid names it from now on (the helper writes it again): the
	// caller does not wait for the helper, and whoever looks next must find
	// it. A failure here is the helper's own write's to repeat.
	statefile.Write(filepath.Join(c.dir(), "helper.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"))
	// Reap it when it exits while this process still runs; if this process
	// exits first, init adopts it.
	go cmd.Wait()
	return nil
}

// HelperMain is the helper process: it serves the state dir's networks, as
// newSource lists them, until none needs a name server, the state dir or
// the host namespace is gone, or it gets SIGTERM. It returns the exit
// status.
func HelperMain(dir string, newSource func(dir string) (Source, error)) int {
	level := slog.LevelInfo
	if os.Getenv(envDebug) != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("pid", os.Getpid())
	nsPath, _ := os.LookupEnv(envNetNS)
	nsIno, _ := strconv.ParseUint(os.Getenv(envNetNSIno), 10, 64)
	cfg := Config{
		Dir:    dir,
		Logger: log,
		Files:  dns.HostFiles{ResolvConf: os.Getenv(envResolv), ResolvedConf: os.Getenv(envResolved)},
	}
	for _, s := range strings.Split(os.Getenv(envUpstreams), ",") {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			cfg.Upstreams = append(cfg.Upstreams, ap)
		}
	}
	lockFD, _ := strconv.Atoi(os.Getenv(envLockFD))
	inherited := map[netip.AddrPort]*dns.Sockets{}
	for _, s := range strings.Split(os.Getenv(envSockets), ";") {
		addr, fds, _ := strings.Cut(s, "=")
		u, t, _ := strings.Cut(fds, ",")
		ap, err := netip.ParseAddrPort(addr)
		ufd, uerr := strconv.Atoi(u)
		tfd, terr := strconv.Atoi(t)
		if err == nil && uerr == nil && terr == nil && ufd > 4 && tfd > 4 {
			inherited[ap] = &dns.Sockets{Addr: ap, UDP: os.NewFile(uintptr(ufd), "dns-udp"), TCP: os.NewFile(uintptr(tfd), "dns-tcp")}
		}
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SANDNET_DNS_") {
			os.Unsetenv(k)
		}
	}
	ns, err := netns.OpenPath("/proc/self/fd/3")
	if err != nil {
		log.Error("dns helper: opening the host namespace (fd 3)", "err", err)
		return 1
	}
	os.NewFile(3, "netns").Close()
	if strings.HasPrefix(nsPath, netns.Dir+"/") && netns.Alive(nsPath, ns.Inode()) {
		// The same namespace, under the name messages should show.
		if named, err := netns.Open(nsPath); err == nil && named.Equal(ns) {
			ns.Close()
			ns = named
		}
	}
	cfg.NS = ns
	src, err := newSource(dir)
	if err != nil {
		log.Error("dns helper", "err", err)
		return 1
	}
	var lock *statefile.Lock
	if lockFD == 4 {
		// Locked for this process by the one that started it.
		lock = statefile.Held(os.NewFile(4, "server.lock"))
	} else {
		var ok bool
		lock, ok, err = statefile.TryAcquire(filepath.Join(cfg.dir(), "server.lock"))
		if err != nil {
			log.Error("dns helper", "err", err)
			return 1
		}
		if !ok {
			log.Info("dns helper: another runner serves this state dir")
			return 0
		}
	}
	defer lock.Release()
	r := newRunner(&cfg, src, lock)
	r.inherited = inherited
	stop := make(chan struct{})
	sigc := make(chan os.Signal, 1)
	// Before helper.pid names this process: an Ensure that reads it may
	// send SIGUSR1, whose default action would kill it.
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	go func() {
		for sig := range sigc {
			if sig == syscall.SIGUSR1 { // an Ensure needs a network served: sync now
				select {
				case r.wake <- struct{}{}:
				default:
				}
				continue
			}
			close(stop)
			return
		}
	}()
	pidFile := filepath.Join(cfg.dir(), "helper.pid")
	if err := statefile.Write(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		log.Error("dns helper", "err", err)
		return 1
	}
	log.Info("dns helper: started", "stateDir", dir, "hostNetNS", nsPath)
	gone := func() bool {
		if _, err := os.Stat(filepath.Join(dir, "version")); err != nil {
			return true
		}
		return !strings.HasPrefix(nsPath, "/proc/self/") && nsPath != "" && !netns.Alive(nsPath, nsIno)
	}
	if _, errs := r.sync(false); len(errs) > 0 {
		log.Warn("dns helper: some networks cannot be served", "errors", errs)
	}
	r.closeInherited() // those of no network wanted
	idle := false
	r.run(stop, gone, func() {
		idle = true
		statefile.Remove(pidFile)
		statefile.Remove(filepath.Join(cfg.dir(), "status.json"))
	})
	if !idle { // else the pid file is gone, and a new helper may have written its own
		statefile.Remove(pidFile)
	}
	log.Info("dns helper: exiting")
	return 0
}

// StopHelper ends the DNS helper serving stateDir, if one runs (it holds
// the dir's server.lock), and waits until it has let go of the dir, so
// that it writes nothing there afterwards: for a state dir about to be
// removed, a test's or a lab's. A helper still holding the lock when ctx
// ends is killed, and that is an error.
func StopHelper(ctx context.Context, stateDir string) error {
	dir := filepath.Join(stateDir, "dns")
	lockPath := filepath.Join(dir, "server.lock")
	if l, free, err := statefile.TryAcquire(lockPath); err != nil || free {
		l.Release()
		return nil // no state dir, or no helper holds it
	}
	// No helper.pid: the helper went idle and is on its way out (it
	// removes the file before it lets go of the lock); it is waited for
	// all the same.
	b, _ := os.ReadFile(filepath.Join(dir, "helper.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid > 0 {
		unix.Kill(pid, unix.SIGTERM)
	}
	l, err := statefile.Acquire(ctx, lockPath, false)
	if err != nil {
		if pid > 0 {
			unix.Kill(pid, unix.SIGKILL)
		}
		return fmt.Errorf("the DNS helper %d of %s did not let go of it: %w", pid, stateDir, err)
	}
	l.Release()
	return nil
}
