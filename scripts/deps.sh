#!/usr/bin/env bash
# Installs what katavol's build, tests and demo need, only when missing. On a machine that has it
# all, this costs a few stat calls (no dpkg or apt invocation).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have_cmd containerd              || need+=(containerd)
have_cmd containerd-shim-runc-v2 || need+=(containerd)
have_cmd runc                    || need+=(runc)
have_cmd mkfs.ext4               || need+=(e2fsprogs)
have_cmd go                      || need+=(golang-go)
# The test rootfs copies busybox alone, so it must be the static build (ldd fails on a static binary).
if [ ! -x /usr/bin/busybox ] || ldd /usr/bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
# csi.proto imports google/protobuf/{descriptor,wrappers,timestamp}.proto; a test compares protobufjs's copies with these.
[ -f /usr/include/google/protobuf/wrappers.proto ] || need+=(libprotobuf-dev)
[ -f /usr/share/gocode/src/github.com/containerd/ttrpc/server.go ] || need+=(golang-github-containerd-ttrpc-dev)
# The CRI client loads the upstream api.proto, which imports gogoproto/gogo.proto.
[ -f /usr/share/gocode/src/github.com/gogo/protobuf/gogoproto/gogo.proto ] || need+=(golang-github-gogo-protobuf-dev)
[ -f /usr/share/gocode/src/github.com/containerd/containerd/runtime/v2/task/shim.proto ] \
                                 || need+=(golang-github-containerd-containerd-dev)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "katavol deps: missing Debian packages: ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "katavol deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.katavol-installed ] || [ package-lock.json -nt node_modules/.katavol-installed ]; then
  echo "katavol deps: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.katavol-installed
fi
