#!/usr/bin/env bash
# CI fragment: prove nettest works without root. As root, it creates an
# ordinary user (if missing), builds the nettest test binary, and runs it as
# that user twice: once whole (nettest.Main re-executes the binary inside a
# new user namespace), once with NETTEST_REEXEC=test (each NewLab re-executes
# its own test). Nothing runs in the machine's network namespace.
#
# Call it from .ci/run after the main test run: bash .ci/unprivileged.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

user=${NETTEST_CI_USER:-sandnet-ci}
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
fi
uid=$(id -u "$user")
[ "$uid" -ne 0 ] || { echo "unprivileged: $user is root" >&2; exit 1; }

if [ "$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 1)" = 0 ] ||
   [ "$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo 1)" = 0 ] ||
   [ "$(sysctl -n kernel.apparmor_restrict_unprivileged_userns 2>/dev/null || echo 0)" = 1 ]; then
  echo "unprivileged: this kernel forbids unprivileged user namespaces; nettest cannot run without root here" >&2
  exit 1
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
go test -c -race -o "$dir/nettest.test" ./nettest/
chmod 755 "$dir/nettest.test"
install -d -o "$user" -m 700 "$dir/home"

as_user() {
  (cd "$dir" && runuser -u "$user" -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$dir/home" TMPDIR="$dir/home" "$@")
}

echo "unprivileged: uid $(as_user id -u), whole binary in one user namespace (nettest.Main)"
as_user ./nettest.test -test.count=1 -test.v -test.timeout=5m >"$dir/main.log" 2>&1 || {
  cat "$dir/main.log"; echo "unprivileged: FAIL (nettest.Main)" >&2; exit 1; }
grep -E '^(--- |ok|PASS|FAIL)' "$dir/main.log"
for t in TestTwoSandboxesHTTP TestThreeHosts TestPartitionAndHeal TestRateLimit TestParallelLabs Example; do
  grep -q -- "--- PASS: $t " "$dir/main.log" || { cat "$dir/main.log"; echo "unprivileged: $t did not pass" >&2; exit 1; }
done

echo "unprivileged: one child per test (NETTEST_REEXEC=test)"
as_user env NETTEST_REEXEC=test ./nettest.test -test.count=1 -test.v -test.timeout=5m \
  -test.run '^(TestTwoSandboxesHTTP|TestPartitionAndHeal)$' >"$dir/pertest.log" 2>&1 || {
  cat "$dir/pertest.log"; echo "unprivileged: FAIL (per test)" >&2; exit 1; }
n=$(grep -c 'PASS inside a user namespace' "$dir/pertest.log" || true)
[ "$n" -eq 2 ] || { cat "$dir/pertest.log"; echo "unprivileged: want 2 tests passed in user namespaces, got $n" >&2; exit 1; }
echo "unprivileged: ok (as $user, without root)"
