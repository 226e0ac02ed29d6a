#!/usr/bin/env bash
# `make demo`: a direct volume end to end on this machine, with no KVM: a private containerd, a raw
# ext4 image registered with `katavol direct-volume add`, a container started through the katavol shim
# (runc host backend) that writes into /disk, and the file read back from the image on the host.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
KATAVOL="$REPO/bin/katavol"
SHIM="$REPO/bin/containerd-shim-katavol-v2"
WORK=$(mktemp -d /tmp/katavol-demo-XXXXXX)
VOLUME=/kubelet/demo/vol1
NS=katavol-demo
CTD_PID=

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
cleanup() {
  set +e
  if [ -n "$CTD_PID" ]; then
    ctr -a "$WORK/c.sock" -n $NS task kill -s SIGKILL demo >/dev/null 2>&1
    ctr -a "$WORK/c.sock" -n $NS task delete demo >/dev/null 2>&1
    ctr -a "$WORK/c.sock" -n $NS container delete demo >/dev/null 2>&1
    kill "$CTD_PID" 2>/dev/null; wait "$CTD_PID" 2>/dev/null
  fi
  losetup -j "$WORK/disk.img" -O NAME --noheadings 2>/dev/null | xargs -r -n1 losetup -d
  # The start booted a warm daemon for the next one (config key warmDaemons): stop it.
  KATAVOL_CONFIG="$WORK/katavol.json" "$KATAVOL" daemons --stop-warm >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

step "1. A private containerd (its own root, state and socket under $WORK; your host containerd is untouched)"
cat > "$WORK/katavol.json" <<JSON
{"backend": "runc", "downstream": "$(command -v containerd-shim-runc-v2)", "socketDir": "$WORK/s"}
JSON
cat > "$WORK/containerd.toml" <<TOML
version = 2
root = "$WORK/root"
state = "$WORK/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/c.sock"
[ttrpc]
  address = "$WORK/c.sock.ttrpc"
TOML
echo "   katavol shim config ($WORK/katavol.json): $(cat "$WORK/katavol.json")"
echo "   (runc backend: the volume is realised on the host through a loop device; with Kata it goes to the VM)"
KATAVOL_CONFIG="$WORK/katavol.json" KATAVOL_VOLUME_ROOT="$WORK/volumes" \
  containerd --config "$WORK/containerd.toml" >"$WORK/containerd.log" 2>&1 &
CTD_PID=$!
for _ in $(seq 100); do ctr -a "$WORK/c.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
echo "   containerd pid $CTD_PID is serving $WORK/c.sock"

step "2. A 64 MiB raw ext4 image: the block device a pod would get"
truncate -s 64M "$WORK/disk.img"
mkfs.ext4 -q -F "$WORK/disk.img"
ls -l "$WORK/disk.img"

step "3. Register it as direct volume $VOLUME (what kata-ctl direct-volume add does)"
export KATAVOL_VOLUME_ROOT="$WORK/volumes"
echo "   \$ katavol direct-volume add $VOLUME '{\"volume-type\":\"directvol\",\"device\":\"$WORK/disk.img\",\"fstype\":\"ext4\"}'"
"$KATAVOL" direct-volume add "$VOLUME" "{\"volume-type\":\"directvol\",\"device\":\"$WORK/disk.img\",\"fstype\":\"ext4\"}"
echo "   \$ katavol direct-volume list"
"$KATAVOL" direct-volume list

step "4. A busybox container started through the katavol shim, with --mount type=directvol"
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/proc" "$WORK/rootfs/dev" "$WORK/rootfs/sys" "$WORK/rootfs/disk"
cp /usr/bin/busybox "$WORK/rootfs/bin/busybox"
for c in sh echo cat df grep; do ln -s busybox "$WORK/rootfs/bin/$c"; done
echo "   \$ ctr run --rm --runtime $SHIM \\"
echo "       --mount type=directvol,src=$VOLUME,dst=/disk,options=rbind:rw --rootfs ROOTFS demo sh -c '...'"
ctr -a "$WORK/c.sock" -n $NS run --rm --runtime "$SHIM" \
  --mount "type=directvol,src=$VOLUME,dst=/disk,options=rbind:rw" --rootfs "$WORK/rootfs" demo \
  /bin/sh -c 'echo "hello from a katavol direct volume" > /disk/hello.txt; echo "   inside: wrote /disk/hello.txt"; grep " /disk " /proc/self/mountinfo | sed "s/^/   inside: mount: /"' 

step "5. Back on the host, read the file straight from the image (debugfs, without mounting it)"
echo "   \$ debugfs -R 'cat /hello.txt' disk.img"
content=$(debugfs -R 'cat /hello.txt' "$WORK/disk.img" 2>/dev/null)
echo "   $content"
[ "$content" = "hello from a katavol direct volume" ] || { echo "demo FAILED: unexpected content" >&2; exit 1; }
left=$(losetup -j "$WORK/disk.img" -O NAME --noheadings)
[ -z "$left" ] || { echo "demo FAILED: loop device left: $left" >&2; exit 1; }
echo "   no loop device left attached; the shim released it when the task was deleted"

step "Done: the container wrote into the direct volume and the host read it back. Cleaning up."
