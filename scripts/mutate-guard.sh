#!/bin/sh
# `make mutate` runs mutated code that attaches and detaches loop devices and unmounts: a mutant of a
# guard can detach a device it did not attach. So it refuses to start while any loop device is attached
# (someone else's test, soak or container may be using it), unless told they are all the caller's.
set -eu
[ "${KATAVOL_MUTATE_SHARED:-}" = 1 ] && exit 0
inuse=$(losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null || true)
[ -z "$inuse" ] && exit 0
{
  echo "make mutate: loop devices are attached on this machine:"
  echo "$inuse" | sed 's/^/  /'
  echo "mutated code detaches loop devices and unmounts, and a mutant of a guard can take one of these:"
  echo "run make mutate where nothing else uses loop devices, or set KATAVOL_MUTATE_SHARED=1 if they are all yours"
} >&2
exit 2
