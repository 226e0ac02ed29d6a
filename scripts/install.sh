#!/usr/bin/env bash
# `make install` / `make uninstall`:
#   scripts/install.sh PREFIX              copy the built tree to PREFIX/lib/katavol (compiled src, the two
#                                          launchers, production node_modules) and link PREFIX/bin/katavol
#                                          and PREFIX/bin/containerd-shim-katavol-v2 to it
#   scripts/install.sh --uninstall PREFIX  remove exactly that (and undo `katavol install-runtime` first)
# Everything created is listed in PREFIX/lib/katavol/.installed, so uninstall removes nothing else.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BINS=(katavol containerd-shim-katavol-v2)
die() { echo "katavol install: $*" >&2; exit 1; }

uninstall=0
if [ "${1:-}" = --uninstall ]; then uninstall=1; shift; fi
[ $# -eq 1 ] || die "usage: $0 [--uninstall] PREFIX"
PREFIX=$1
case "$PREFIX" in /*) ;; *) die "PREFIX must be an absolute path, got \"$PREFIX\"" ;; esac
PREFIX=${PREFIX%/}; [ -n "$PREFIX" ] || PREFIX=/
LIB=$PREFIX/lib/katavol
MANIFEST=$LIB/.installed
RUNTIME_RECORD=$PREFIX/bin/.containerd-shim-kata-v2.katavol.json

# Our link: a symlink whose target is our lib's launcher.
is_our_link() { [ -L "$1" ] && [ "$(readlink "$1")" = "../lib/katavol/bin/$(basename "$1")" ]; }

if [ $uninstall = 1 ]; then
  if [ -f "$RUNTIME_RECORD" ]; then
    [ -x "$LIB/bin/katavol" ] || die "$RUNTIME_RECORD exists but $LIB/bin/katavol is gone; undo install-runtime by hand"
    "$LIB/bin/katavol" uninstall-runtime --prefix "$PREFIX"
  fi
  if [ ! -f "$MANIFEST" ]; then
    echo "katavol is not installed in $PREFIX (no $MANIFEST); nothing to do"
    exit 0
  fi
  # Warm shim daemons of this build would retire on their own once it is gone; stop them now instead.
  if [ -x "$LIB/bin/katavol" ]; then "$LIB/bin/katavol" daemons --stop-warm || true; fi
  mapfile -t created < <(grep '^dir ' "$MANIFEST" | cut -d' ' -f2-)
  for b in "${BINS[@]}"; do
    if is_our_link "$PREFIX/bin/$b"; then rm -f "$PREFIX/bin/$b"; echo "removed $PREFIX/bin/$b"; fi
  done
  rm -rf "$LIB"
  echo "removed $LIB"
  # Directories install made, deepest first, only if nothing else was put there since.
  for ((i = ${#created[@]} - 1; i >= 0; i--)); do
    d=${created[$i]}
    if rmdir "$d" 2>/dev/null; then echo "removed $d"; fi
  done
  exit 0
fi

[ -f "$REPO/dist/src/shim/main.js" ] && [ -f "$REPO/dist/src/cli/main.js" ] || die "katavol is not built: run make build (or make install, which builds)"
if [ -e "$LIB" ] && [ ! -f "$MANIFEST" ]; then die "$LIB exists and was not installed by katavol; move it away first"; fi
for b in "${BINS[@]}"; do
  if [ -e "$PREFIX/bin/$b" ] || [ -L "$PREFIX/bin/$b" ]; then
    is_our_link "$PREFIX/bin/$b" || die "$PREFIX/bin/$b exists and is not katavol's link; move it away first"
  fi
done
# Production dependencies only, as npm resolved them for this checkout (works offline).
mapfile -t deps < <(cd "$REPO" && npm ls --omit=dev --all --parseable 2>/dev/null | sed -n "s|^$REPO/||p" | grep '^node_modules/' || true)
[ ${#deps[@]} -gt 0 ] || die "cannot list the production node_modules (npm ls --omit=dev failed); run make deps and npm ci first"

# Directories this install creates (kept from an earlier install of the same prefix).
created=()
if [ -f "$MANIFEST" ]; then mapfile -t created < <(grep '^dir ' "$MANIFEST" | cut -d' ' -f2-); fi
for d in "$PREFIX" "$PREFIX/bin" "$PREFIX/lib"; do
  if [ ! -d "$d" ]; then mkdir -p "$d"; created+=("$d"); fi
done

# Build the tree beside its final place, then swap it in: no half-installed lib on failure.
STAGE=$(mktemp -d "$PREFIX/lib/.katavol-install.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/dist"
for b in "${BINS[@]}"; do cp "$REPO/bin/$b" "$STAGE/bin/$b"; chmod 755 "$STAGE/bin/$b"; done
cp -R "$REPO/dist/src" "$STAGE/dist/src"
cp "$REPO/package.json" "$STAGE/package.json"
for d in "${deps[@]}"; do
  mkdir -p "$STAGE/$(dirname "$d")"
  [ -e "$STAGE/$d" ] || cp -R "$REPO/$d" "$STAGE/$d"
done
{
  for d in "${created[@]}"; do echo "dir $d"; done
  for b in "${BINS[@]}"; do echo "link $PREFIX/bin/$b"; done
} > "$STAGE/.installed"
chmod 755 "$STAGE"
rm -rf "$LIB"
mv "$STAGE" "$LIB"
trap - EXIT
for b in "${BINS[@]}"; do
  ln -sfn "../lib/katavol/bin/$b" "$PREFIX/bin/$b"
  echo "linked $PREFIX/bin/$b -> ../lib/katavol/bin/$b"
done
echo "installed katavol in $LIB (${#deps[@]} production packages)"
echo "next: katavol install-runtime --prefix $PREFIX   # to run Kata containers through katavol"
