package sandnet

import (
	"errors"
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

	"github.com/sandnet/sandnet/internal/statefile"
	"github.com/sandnet/sandnet/netns"
)

// The DNS helper is the running program itself, re-executed (from
// /proc/self/exe) with these variables set. The init function below turns
// such a process into the helper before main (or a test binary's TestMain)
// runs, so every program that can call Attach contains the helper, with no
// hook to call and no second binary to install.
const (
	envDNSHelper    = "SANDNET_DNS_HELPER" // the state dir
	envDNSNetNS     = "SANDNET_DNS_NETNS"  // the host namespace's path, as the attacher saw it (fd 3 is the namespace)
	envDNSNetNSIno  = "SANDNET_DNS_NETNS_INODE"
	envDNSResolv    = "SANDNET_DNS_RESOLV_CONF"
	envDNSResolved  = "SANDNET_DNS_RESOLVED_CONF"
	envDNSUpstreams = "SANDNET_DNS_UPSTREAMS" // comma-separated ADDR:PORT
	envDNSDebug     = "SANDNET_DNS_DEBUG"
)

func init() {
	if dir := os.Getenv(envDNSHelper); dir != "" {
		os.Exit(dnsHelperMain(dir))
	}
}

var errWouldBlock = unix.EWOULDBLOCK

func flockNB(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// ensureHelper starts the helper process for the state dir unless one
// runs (holds server.lock); the caller holds start.lock.
func (h *Host) ensureHelper() error {
	f, free, err := tryLock(filepath.Join(h.dnsDir(), "server.lock"))
	if err != nil {
		return err
	}
	if !free {
		return nil // a runner serves the state dir: it picks the network up on its next sync
	}
	f.Close()
	return h.spawnHelper()
}

// spawnHelper starts the helper: a new session (so it outlives the
// attacher's terminal and process group), stdin from /dev/null, output to
// helper.log in the state dir, the host namespace passed as fd 3.
func (h *Host) spawnHelper() error {
	logf, err := os.OpenFile(filepath.Join(h.dnsDir(), "helper.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("starting the DNS helper: %w", err)
	}
	defer logf.Close()
	fd, err := unix.Dup(h.ns.Fd())
	if err != nil {
		return fmt.Errorf("starting the DNS helper: %w", err)
	}
	nsf := os.NewFile(uintptr(fd), "netns")
	defer nsf.Close()

	env := []string{
		envDNSHelper + "=" + h.dir,
		envDNSNetNS + "=" + h.ns.Path(),
		envDNSNetNSIno + "=" + strconv.FormatUint(h.ns.Inode(), 10),
		envDNSResolv + "=" + h.dnsCfg.files.ResolvConf,
		envDNSResolved + "=" + h.dnsCfg.files.ResolvedConf,
	}
	var ups []string
	for _, u := range h.dnsCfg.upstreams {
		ups = append(ups, u.String())
	}
	env = append(env, envDNSUpstreams+"="+strings.Join(ups, ","))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SANDNET_DNS_") || strings.HasPrefix(kv, envDNSDebug+"=") {
			env = append(env, kv)
		}
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{"sandnet-dns", h.dir},
		Env:         env,
		Dir:         "/",
		Stdout:      logf,
		Stderr:      logf,
		ExtraFiles:  []*os.File{nsf},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the DNS helper (/proc/self/exe): %w", err)
	}
	h.log.Debug("dns: started helper", "pid", cmd.Process.Pid, "stateDir", h.dir)
	// Reap it when it exits while this process still runs; if this process
	// exits first, init adopts it.
	go cmd.Wait()
	return nil
}

// dnsHelperMain is the helper process: it serves the state dir's networks
// until no endpoint needs a name server, the state dir or the host
// namespace is gone, or it gets SIGTERM. It returns the exit status.
func dnsHelperMain(dir string) int {
	level := slog.LevelInfo
	if os.Getenv(envDNSDebug) != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("pid", os.Getpid())
	nsPath, _ := os.LookupEnv(envDNSNetNS)
	nsIno, _ := strconv.ParseUint(os.Getenv(envDNSNetNSIno), 10, 64)
	cfg := HostConfig{
		StateDir:     dir,
		Logger:       log,
		ResolvConf:   os.Getenv(envDNSResolv),
		ResolvedConf: os.Getenv(envDNSResolved),
	}
	for _, s := range strings.Split(os.Getenv(envDNSUpstreams), ",") {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			cfg.DNSUpstreams = append(cfg.DNSUpstreams, ap)
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
	dc, err := newDNSConfig(cfg)
	if err != nil {
		log.Error("dns helper", "err", err)
		return 1
	}
	// A Host for reading records only: no IPAM, no kernel changes.
	h := &Host{ns: ns, dir: dir, log: log, nets: map[string]*netState{}, dnsCfg: dc}
	lock, ok, err := tryLock(filepath.Join(h.dnsDir(), "server.lock"))
	if err != nil {
		log.Error("dns helper", "err", err)
		return 1
	}
	if !ok {
		log.Info("dns helper: another runner serves this state dir")
		return 0
	}
	defer lock.Close()
	pidFile := filepath.Join(h.dnsDir(), "helper.pid")
	if err := statefile.Write(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		log.Error("dns helper", "err", err)
		return 1
	}
	log.Info("dns helper: started", "stateDir", dir, "hostNetNS", nsPath)
	stop := make(chan struct{})
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() { <-sigc; close(stop) }()
	gone := func() bool {
		if _, err := os.Stat(filepath.Join(dir, "version")); err != nil {
			return true
		}
		return !strings.HasPrefix(nsPath, "/proc/self/") && nsPath != "" && !netns.Alive(nsPath, nsIno)
	}
	r := newDNSRunner(h, lock)
	if _, errs := r.sync(); len(errs) > 0 {
		log.Warn("dns helper: some networks cannot be served", "errors", errs)
	}
	r.run(stop, gone, func() {
		statefile.Remove(pidFile)
		statefile.Remove(filepath.Join(h.dnsDir(), "status.json"))
	})
	statefile.Remove(pidFile)
	log.Info("dns helper: exiting")
	return 0
}

// DNSHelperPID returns the PID of the state dir's DNS helper process, or 0
// when none runs.
func (h *Host) DNSHelperPID() int {
	b, err := statefile.Read(filepath.Join(h.dnsDir(), "helper.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || unix.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}
