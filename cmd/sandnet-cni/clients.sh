#!/usr/bin/env bash
# clients.sh [cnitool|podman|containerd]...: sandnet's CNI plugin driven by real third-party
# clients on the real kernel: cnitool (add, check, status, gc, del), Podman 4 with
# network_backend "cni" (a container with -p reached from another namespace and from a second
# container, stop/start, nothing left after rm) and containerd's `ctr run --cni`. No argument
# runs all three. A client that is not installed is skipped with the package to install.
#
# Everything runs inside `unshare --net --mount --propagation private`: the private network
# namespace plays the node, and tmpfs mounts hide /etc/cni/net.d, /opt, /var/lib/cni, /run/netns,
# /run/sandnet, /etc/netns and /dev/shm, so no client touches the machine's own network,
# CNI configuration or firewall. Daemons started here are ended by PID. Run as root, from the
# repository (it builds the plugin as the README installs it):
#
#   bash cmd/sandnet-cni/clients.sh
#   CNITOOL=/path/to/cnitool bash cmd/sandnet-cni/clients.sh cnitool
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${SNC_INSIDE:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "clients.sh: needs root (it creates namespaces)" >&2; exit 2; }
	work=$(mktemp -d /tmp/sandnet-cni-clients.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	mkdir -p "$work/bin"
	(cd "$here/../.." && CGO_ENABLED=0 go build -ldflags=-s -o "$work/bin/sandnet" ./cmd/sandnet-cni) # as the README installs it
	(cd "$here/../.." && go build -o "$work/bin/sandnet-cli" ./cmd/sandnet)
	if [ -z "${CNITOOL:-}" ] && ! command -v cnitool >/dev/null; then
		# cnitool from the same module as the plugin's CNI library (the Go module proxy).
		(cd "$here/../.." && GOBIN="$work/bin" go install github.com/containernetworking/cni/cnitool@v1.2.3) || true
	fi
	rc=0
	for client in ${@:-cnitool podman containerd}; do
		echo "== $client"
		SNC_INSIDE=1 SNC_WORK="$work" unshare --net --mount --propagation private "$0" "$client" || rc=1
	done
	exit $rc
fi

# ---- inside: a private network and mount namespace playing the node ----
work=$SNC_WORK
bin=$work/bin
run=$(mktemp -d "$work/$1.XXXXXX")
# Private copies of everything a client or sandnet writes: /run (netns, sandnet's state, the
# runtimes' state), CNI configuration and plugins, /etc/netns, /dev/shm (podman's locks), and
# /var/lib as a copy-on-write overlay (libcni's cache, /var/lib/cni, may not exist here).
for d in /run /etc/netns /dev/shm /opt; do
	[ -d "$d" ] && mount -t tmpfs snc "$d"
done
[ -d /etc/cni/net.d ] && mount -t tmpfs snc /etc/cni/net.d
mkdir -p "$run/varlib.up" "$run/varlib.work"
mount -t overlay snc -o "lowerdir=/var/lib,upperdir=$run/varlib.up,workdir=$run/varlib.work" /var/lib
mkdir -p /run/netns /run/sandnet /var/lib/cni
[ -d /etc/cni/net.d ] || { echo "clients.sh: /etc/cni/net.d is missing on this machine (mkdir -p /etc/cni/net.d once)" >&2; exit 1; }
mkdir -p /etc/cni/net.d /opt/cni/bin
ip link set lo up
# endhelper ends sandnet's DNS helper (it would stop by itself once no endpoint needs it; a
# failed run may leave endpoints behind) and anything still running in the sandbox snc-a.
endhelper() {
	set +e # a trap: every step runs, whatever failed before
	local p; p=$(cat /run/sandnet/dns/helper.pid 2>/dev/null || true)
	[ -n "$p" ] && kill "$p" 2>/dev/null || true
	for p in $(ip netns pids snc-a 2>/dev/null || true); do kill "$p"; done
}
trap endhelper EXIT
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failed=1; }
failed=0

# The outside world: a namespace on a LAN with the node (node 192.168.55.1, outside .2).
ip netns add snc-out
ip link add snc-lan type veth peer name eth0 netns snc-out
ip addr add 192.168.55.1/24 dev snc-lan && ip link set snc-lan up
ip -n snc-out addr add 192.168.55.2/24 dev eth0 && ip -n snc-out link set eth0 up && ip -n snc-out link set lo up

# (busybox 1.35's wget -T segfaults: timeout(1) bounds it instead.)
# A busybox image's root file system: /bin/busybox and its applets, a page to serve.
rootfs() {
	local r=$run/rootfs
	mkdir -p "$r/bin" "$r/www" "$r/etc" "$r/proc" "$r/sys" "$r/dev" "$r/tmp"
	cp "$(command -v busybox)" "$r/bin/busybox"
	for a in sh httpd wget ip ifconfig cat sleep nc hostname timeout; do ln -sf busybox "$r/bin/$a"; done
	echo "hello from sandnet" >"$r/www/index.html"
	echo "$r"
}

# leftovers says what sandnet still holds for network $1 besides the network itself.
leftovers() {
	local n=$1 left=""
	local v; v=$(ip -o link show type veth | grep -vc snc-lan || true)
	[ "$v" = 0 ] || left="$left $v veth(s);"
	local e; e=$(ls /run/sandnet/endpoints/"$n" 2>/dev/null | grep -c json || true)
	[ "$e" = 0 ] || left="$left $e endpoint record(s);"
	local l; l=$(ls /run/sandnet/ipam/"$n" 2>/dev/null | grep -c '^[0-9]' || true)
	[ "$l" = 0 ] || left="$left $l lease(s);"
	local m; m=$(nft list ruleset 2>/dev/null | grep -c ' : [0-9.]* \. ' || true)
	[ "$m" = 0 ] || left="$left $m published port(s);"
	local f; f=$(ls /etc/netns 2>/dev/null | wc -l)
	[ "$f" = 0 ] || left="$left $f /etc/netns dir(s);"
	echo "${left:-nothing}"
}

conflist() { # name version subnet
	cat <<EOF
{"cniVersion": "$2", "name": "$1", "plugins": [
  {"type": "sandnet", "subnet": "$3", "capabilities": {"portMappings": true, "ips": true, "mac": true, "aliases": true, "dns": true}}
]}
EOF
}

case "$1" in
cnitool)
	cnitool=${CNITOOL:-$(command -v cnitool || echo "$bin/cnitool")}
	[ -x "$cnitool" ] || { echo "SKIP cnitool not found (go install github.com/containernetworking/cni/cnitool@v1.2.3)"; exit 0; }
	conflist snc 1.1.0 10.123.0.0/24 >/etc/cni/net.d/10-sandnet.conflist
	export NETCONFPATH=/etc/cni/net.d CNI_PATH=$bin:/usr/lib/cni
	ip netns add snc-a
	CAP_ARGS='{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}' \
		CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web" "$cnitool" add snc /run/netns/snc-a >"$run/add.json" &&
		pass "cnitool add: $(grep -o '"address": "[^"]*"' "$run/add.json")" || fail "cnitool add"
	r=$(rootfs)
	ip netns exec snc-a busybox httpd -p 80 -h "$r/www" &&
		got=$(ip netns exec snc-out timeout 5 busybox wget -qO- http://192.168.55.1:8080/ || true)
	[ "$got" = "hello from sandnet" ] && pass "published port reached from another namespace" || fail "published port: got '$got'"
	"$cnitool" check snc /run/netns/snc-a && pass "cnitool check" || fail "cnitool check"
	# The CLI shares the state dir: it sees the runtime's attachment.
	"$bin/sandnet-cli" net ls | grep -q snc && "$bin/sandnet-cli" doctor snc-a >"$run/doctor.txt" 2>&1 &&
		pass "sandnet net ls and doctor see the attachment" || fail "sandnet CLI: $(cat "$run/doctor.txt")"
	"$cnitool" status snc /run/netns/snc-a && pass "cnitool status" || fail "cnitool status"
	ip -n snc-a addr flush dev eth0
	"$cnitool" check snc /run/netns/snc-a 2>"$run/check.err" && fail "cnitool check after the address was removed passed" ||
		pass "cnitool check after the address was removed fails: $(head -c 200 "$run/check.err")"
	# cnitool gc passes no valid attachments: libcni DELs every cached attachment, then GC.
	"$cnitool" gc snc /run/netns/snc-a && pass "cnitool gc: left $(leftovers snc)" || fail "cnitool gc"
	"$cnitool" add snc /run/netns/snc-a >/dev/null && "$cnitool" del snc /run/netns/snc-a &&
		"$cnitool" del snc /run/netns/snc-a && pass "cnitool add, del, del again: left $(leftovers snc)" || fail "cnitool add/del/del"
	endhelper
	ip netns del snc-a
	;;
podman)
	command -v podman >/dev/null || { echo "SKIP podman not found (apt-get install podman)"; exit 0; }
	mkdir -p "$run/net.d"
	conflist snc 1.0.0 10.124.0.0/24 >"$run/net.d/10-sandnet.conflist"
	cat >"$run/containers.conf" <<EOF
[network]
network_backend = "cni"
cni_plugin_dirs = ["$bin", "/usr/lib/cni"]
network_config_dir = "$run/net.d"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
	export CONTAINERS_CONF=$run/containers.conf
	pm() { podman --runtime runc --root "$run/root" --runroot /run/snc-podman --tmpdir /run/snc-libpod --storage-driver vfs --network-config-dir "$run/net.d" "$@"; }
	trap 'set +e; pm rm -af -t 0 >/dev/null 2>&1; endhelper' EXIT
	r=$(rootfs)
	tar -C "$r" -cf "$run/rootfs.tar" .
	pm import -q "$run/rootfs.tar" localhost/snc-busybox:latest >/dev/null
	pm run -d --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --name web --network snc -p 8080:80 localhost/snc-busybox httpd -f -p 80 -h /www >/dev/null &&
		pass "podman run -p 8080:80 on network snc ($(pm inspect web --format '{{.NetworkSettings.Networks.snc.IPAddress}}'))" || fail "podman run"
	reach() {
		local got
		got=$(ip netns exec snc-out timeout 5 busybox wget -qO- http://192.168.55.1:8080/ || true)
		[ "$got" = "hello from sandnet" ] && pass "$1: reached from another namespace" || fail "$1: from another namespace: '$got'"
		got=$(pm run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network snc localhost/snc-busybox timeout 5 wget -qO- http://192.168.55.1:8080/ 2>&1 || true)
		[ "$got" = "hello from sandnet" ] && pass "$1: reached from a second container" || fail "$1: from a second container: '$got'"
	}
	reach "podman run"
	# By name: Podman passes the container's name in K8S_POD_NAME and its aliases; the
	# result names sandnet's name server, which Podman puts in the container's resolv.conf.
	got=$(pm run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network snc localhost/snc-busybox timeout 5 wget -qO- http://web/ 2>&1 || true)
	[ "$got" = "hello from sandnet" ] && pass "a second container reaches web by name" || fail "by name: '$got'"
	pm stop -t 1 web >/dev/null && pm start web >/dev/null && reach "after stop/start" || fail "podman stop/start"
	pm rm -f -t 1 web >/dev/null
	left=$(leftovers snc)
	[ "$left" = nothing ] && pass "podman rm: nothing left" || fail "podman rm: left$left"
	;;
containerd)
	command -v containerd >/dev/null && command -v ctr >/dev/null || { echo "SKIP containerd not found (apt-get install containerd)"; exit 0; }
	command -v podman >/dev/null || { echo "SKIP podman not found to build the image (apt-get install podman)"; exit 0; }
	conflist snc 1.0.0 10.125.0.0/24 >/etc/cni/net.d/10-sandnet.conflist
	ln -s "$bin/sandnet" /opt/cni/bin/sandnet
	ln -s /usr/lib/cni/loopback /opt/cni/bin/loopback
	c=$run/containerd
	mkdir -p "$c"
	cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$c/sock"
[ttrpc]
  address = "$c/ttrpc.sock"
EOF
	containerd --config "$c/config.toml" >"$c/log" 2>&1 &
	cpid=$!
	cctl() { ctr --address "$c/sock" -n snc "$@"; }
	trap 'set +e; cctl t rm -f web >/dev/null 2>&1; cctl c rm web >/dev/null 2>&1; kill $cpid; wait $cpid; endhelper' EXIT
	for _ in $(seq 50); do [ -S "$c/sock" ] && break; sleep 0.1; done
	r=$(rootfs)
	tar -C "$r" -cf "$run/rootfs.tar" .
	pm() { podman --root "$run/root" --runroot /run/snc-podman --tmpdir /run/snc-libpod --storage-driver vfs "$@"; }
	pm import -q "$run/rootfs.tar" localhost/snc-busybox:latest >/dev/null
	pm save -q -o "$run/image.tar" localhost/snc-busybox:latest
	cctl images import --snapshotter native "$run/image.tar" >/dev/null
	# Not detached: ctr 1.6 tears the network down (DEL with an empty netns, as containerd
	# does) only when it waits for the task; a detached task's network is never removed.
	cctl run --cni --rm --snapshotter native localhost/snc-busybox:latest web \
		sh -c 'httpd -p 80 -h /www; sleep 4' >"$c/run.log" 2>&1 &
	rpid=$!
	for _ in $(seq 50); do ls /run/sandnet/endpoints/snc/*.json >/dev/null 2>&1 && break; sleep 0.1; done
	sleep 0.5
	ip=$(cat /run/sandnet/endpoints/snc/*.json 2>/dev/null | grep -o '"10\.125\.0\.[0-9]*/24"' | head -1 | tr -d '"' | cut -d/ -f1)
	[ -n "$ip" ] && pass "ctr run --cni: container on $ip" || fail "ctr run --cni: no endpoint ($(cat "$c/run.log"))"
	got=$(timeout 5 busybox wget -qO- "http://$ip/" || true)
	[ "$got" = "hello from sandnet" ] && pass "container $ip reached from the node" || fail "container $ip from the node: '$got'"
	wait $rpid && pass "ctr run --rm exited, network removed by ctr" || fail "ctr run: $(cat "$c/run.log")"
	left=$(leftovers snc)
	[ "$left" = nothing ] && pass "after ctr run --rm: nothing left" || {
		fail "after ctr run --rm: left$left"
		grep -h -E '"(sandboxID|ifName|netns)"' /run/sandnet/endpoints/snc/*.json
		ls /var/lib/cni/results 2>/dev/null
	}
	;;
esac
ip netns del snc-out
exit $failed
