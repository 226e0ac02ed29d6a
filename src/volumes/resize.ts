// `direct-volume resize`: grow a raw-file directvol volume and its ext2/3/4 filesystem, offline or,
// when the runc host backend has it mounted through a loop device, online. Never shrinks; refuses
// while a VM uses the volume (a running VM does not see its disk grow, and Kata's agent cannot resize).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { type Registry } from './registry';
import { VolumeError, messageOf } from './types';
import { CAP_SYS_RESOURCE, type HostMount, type ToolResult, devNumber, devNumberOf, findHostMounts, findTool, hasEffectiveCapability, hasExtSuperblock, isExtFs, loopDevicesOf, runTool } from './host-device';
import { describeUses, hostUsesOf } from './in-use';

/** Backend name the runc host backend records; any other recorded sandbox is a VM. */
export const HOST_BACKEND = 'runc';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/** Bytes, or a binary suffix K/M/G/T/P (optionally "i"/"iB", e.g. 10G, 512MiB). Undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+)\s*([kmgtp]?)(i?b?)$/i.exec(text.trim());
  if (!m || (m[3] && !m[2])) return undefined;
  const n = Number(m[1]) * UNITS[m[2].toLowerCase()];
  return Number.isSafeInteger(n) ? n : undefined;
}

export function formatSize(n: number): string {
  for (const [u, f] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= f && n % f === 0) return `${n / f} ${u}`;
  }
  return `${n} bytes`;
}

export interface ResizeResult {
  volumePath: string;
  device: string;
  oldSize: number;
  newSize: number;
  loopDevices: string[];
  filesystem: 'grown-online' | 'grown-offline' | 'not-ext';
  /** One line for the CLI. */
  summary: string;
}

export function resizeVolume(reg: Registry, volumePath: string, newSize: number): ResizeResult {
  return reg.locked(volumePath, () => {
    const { info, dir } = reg.read(volumePath);
    const bad: Bad = (problem, fix, cause) => new VolumeError(volumePath, problem, fix, dir, cause);
    if (info.volumeType !== 'directvol') {
      throw bad(`is a ${info.volumeType} volume; katavol resizes directvol volumes backed by an image file`, 'grow the device with its own tools');
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(info.device);
    } catch (e) {
      throw bad(`device ${info.device} cannot be read: ${messageOf(e)}`, 'restore the image file or register the volume again', e);
    }
    if (!st.isFile()) throw bad(`device ${info.device} is a block device, not an image file`, 'grow the block device with its own tools (e.g. lvextend), then resize2fs it');

    const vms = reg.sandboxesOf(volumePath).filter((s) => s.backend !== HOST_BACKEND);
    if (vms.length) {
      const who = vms.map((s) => `${s.id} (${s.backend || 'recorded by Kata'})`).join(', ');
      throw bad(`is in use by VM sandbox ${who}; a running VM does not see its disk grow and Kata's agent cannot resize it`, 'stop those sandboxes first, then resize');
    }
    // Mounts are grown online below; swap, or a dm/md device over the image, would not see it grow
    // (or would be corrupted by a filesystem resize underneath).
    // Stryker disable next-line OptionalChaining: an image's own uses are swap (decided by the first test) or loop devices, which always carry beyond
    const blocking = hostUsesOf(volumePath, info.device).filter((u) => u.kind === 'swap' || u.beyond?.some((b) => b.kind !== 'mount'));
    if (blocking.length) {
      const fixes = [...new Set(blocking.map((u) => u.fix))];
      throw bad(`${describeUses(info.device, blocking, false)}; katavol does not resize a device something else builds on`, `${fixes.join('; ')}; then resize again`);
    }
    const oldSize = st.size;
    if (newSize < oldSize) throw bad(`new size ${newSize} is smaller than the current ${oldSize} bytes of ${info.device}; katavol never shrinks a volume`, `give a size of at least ${oldSize}`);

    const ext = isExtFs(info.fsType);
    if (ext && !hasExtSuperblock(info.device)) {
      throw bad(`fstype is ${info.fsType} but ${info.device} has no ext2/3/4 superblock`, `correct "fstype" with katavol direct-volume add (blkid -p ${info.device} shows what it holds)`);
    }
    const loops = loopDevicesOf(info.device);
    const mounts = findHostMounts(loops);

    // Every precondition is checked before the image changes: a refusal leaves everything as it was.
    const online = ext && mounts.length ? onlinePlan(volumePath, bad, mounts) : undefined;
    checkHostSpace(info.device, oldSize, newSize, bad);
    // Offline: check the filesystem before changing anything, as resize2fs requires. Never when the
    // filesystem is mounted anywhere (findHostMounts looks in every mount namespace).
    const offlineTarget = loops[0] ?? info.device;
    if (ext && !mounts.length) {
      // Stryker disable next-line StringLiteral: the package is named only when the tool is not installed, and every test host has e2fsprogs and util-linux
      const fsck = runTool(volumePath, 'e2fsck', ['-f', '-p', offlineTarget], 'e2fsprogs');
      if (fsck.status >= 4) throw bad(`${fsck.command} found errors it could not fix (exit ${fsck.status}): ${fsck.stderr}`, `repair it with e2fsck -f ${offlineTarget}, then resize again`);
    }

    fs.truncateSync(info.device, newSize); // newSize >= oldSize here: grows it, or changes nothing
    for (const loop of loops) {
      // Stryker disable next-line StringLiteral: the package is named only when the tool is not installed, and every test host has e2fsprogs and util-linux
      const r = runTool(volumePath, 'losetup', ['-c', loop], 'mount');
      // Stryker disable next-line ConditionalExpression,EqualityOperator,StringLiteral: LOOP_SET_CAPACITY fails only if the loop device was detached since loopDevicesOf found it, a race no test can schedule
      if (r.status !== 0) throw bad(`grew ${info.device} to ${newSize} bytes, but ${r.command} failed: ${r.stderr}`, `run losetup -c ${loop} by hand`);
    }
    const grown = `${info.device} ${formatSize(oldSize)} -> ${formatSize(newSize)}`;
    const result = { volumePath, device: info.device, oldSize, newSize, loopDevices: loops };
    if (!ext) {
      const fsNote = info.fsType ? `the ${info.fsType} filesystem was not grown; grow it from inside (e.g. xfs_growfs on its mount point)` : 'no fstype, so no filesystem was grown';
      return { ...result, filesystem: 'not-ext', summary: `resized direct volume ${volumePath}: ${grown}; ${fsNote}` };
    }

    // Stryker disable all: reached only with CAP_SYS_RESOURCE (online growth), which this host lacks; the "with CAP_SYS_RESOURCE" cases of test/volumes/resize.test.ts cover it where the capability exists
    if (online) {
      const m = online;
      growOnline(volumePath, dir, m, grown);
      return { ...result, filesystem: 'grown-online', summary: `resized direct volume ${volumePath}: ${grown}; ${info.fsType} grown online through ${m.device} (mounted at ${m.mountPoint}${m.ownNamespace ? '' : ` in the mount namespace of pid ${m.pid}`})` };
    }
    // Stryker restore all
    // Stryker disable next-line StringLiteral: the package is named only when the tool is not installed, and every test host has e2fsprogs and util-linux
    const r = runTool(volumePath, 'resize2fs', [offlineTarget], 'e2fsprogs');
    // Stryker disable next-line ConditionalExpression,EqualityOperator,StringLiteral: resize2fs fails here only on a filesystem e2fsck has just passed, which no test can make (the always-refuse form fails every growth test)
    if (r.status !== 0) throw bad(`grew ${grown}, but ${r.command} failed: ${r.stderr}`, `the filesystem keeps its old size; run resize2fs ${offlineTarget} by hand`);
    return { ...result, filesystem: 'grown-offline', summary: `resized direct volume ${volumePath}: ${grown}; ${info.fsType} filesystem grown to fill it` };
  });
}

type Bad = (problem: string, fix: string, cause?: unknown) => VolumeError;

const where = (m: HostMount): string => `${m.device} at ${m.mountPoint}${m.ownNamespace ? '' : ` in the mount namespace of pid ${m.pid}`}`;

/**
 * Preconditions of growing a mounted ext2/3/4: the kernel grows it (EXT4_IOC_RESIZE_FS, issued by
 * resize2fs on a mounted filesystem) only for a caller with CAP_SYS_RESOURCE, on a read-write mount,
 * and resize2fs must find the mount in its own mount table. Returns the mount to grow through.
 */
function onlinePlan(volumePath: string, bad: Bad, mounts: HostMount[]): HostMount {
  const unchanged = 'nothing was changed';
  const m = mounts.find((x) => !x.readOnly);
  if (!m) {
    throw bad(`is mounted read-only (${mounts.map(where).join(', ')}); a read-only filesystem cannot be grown online`, `${unchanged}; stop the containers using it and resize it offline`);
  }
  // Stryker disable next-line ConditionalExpression: this host lacks CAP_SYS_RESOURCE, so "always refuse" is what happens here; the "with CAP_SYS_RESOURCE" cases cover the other branch where it exists
  if (!hasEffectiveCapability(CAP_SYS_RESOURCE)) {
    throw bad(`is mounted (${where(m)}) and growing a mounted ext4 needs CAP_SYS_RESOURCE, which this process does not have (CapEff in /proc/self/status)`,
      `${unchanged}; run the resize as root where CAP_SYS_RESOURCE is not dropped (on the host, not inside a restricted container), or stop the container using the volume and resize it offline`);
  }
  // Stryker disable all: reached only with CAP_SYS_RESOURCE (online growth), which this host lacks; the "with CAP_SYS_RESOURCE" cases of test/volumes/resize.test.ts cover it where the capability exists
  for (const tool of ['resize2fs', 'unshare', 'mount']) {
    if (!findTool(tool)) throw bad(`is mounted and growing it online needs ${tool}, which is not installed`, `${unchanged}; install ${tool === 'resize2fs' ? 'e2fsprogs' : 'util-linux'}`);
  }
  // The host's view of the mounted filesystem: /proc/<pid>/root/<mount point> must be that device.
  const hostPath = path.join(`/proc/${m.pid}/root`, m.mountPoint);
  let reached = '';
  try {
    reached = devNumberOf(fs.statSync(hostPath, { bigint: true }).dev);
  } catch (e) {
    throw bad(`is mounted (${where(m)}) but its filesystem cannot be reached from the host through ${hostPath}: ${messageOf(e)}`, `${unchanged}; check that pid ${m.pid} still runs, or stop the container and resize offline`, e);
  }
  if (reached !== devNumber(m.device)) {
    throw bad(`is mounted (${where(m)}) but ${hostPath} is on device ${reached}, not ${m.device}`, `${unchanged}; something is mounted over the volume's mount point; resize it offline`);
  }
  // resize2fs needs the mount in its own mount table: a second mount of the same superblock in a
  // private namespace of our own. Try it before changing anything.
  const probe = mountAndRun(volumePath, m, []);
  if (probe.status !== 0) {
    throw bad(`is mounted (${where(m)}) but mounting ${m.device} again to reach it failed: ${probe.stderr}`, `${unchanged}; stop the container using the volume and resize it offline`);
  }
  return m;
  // Stryker restore all
}

/** The image file grows by newSize - oldSize: its file system must have that room (no sparse overcommit). */
function checkHostSpace(image: string, oldSize: number, newSize: number, bad: Bad): void {
  const need = newSize - oldSize;
  const s = fs.statfsSync(path.dirname(image));
  const free = s.bavail * s.bsize;
  // Stryker disable next-line EqualityOperator: "<=" differs only when the free space is exactly the growth, to the byte
  if (free < need) {
    throw bad(`growing ${image} by ${formatSize(need)} needs that much free space on its file system, which has ${formatSize(free)} available`,
      'nothing was changed; free space there (df ' + path.dirname(image) + ') or choose a smaller size');
  }
}

/** Mounts m's device at a fresh directory in a private mount namespace and runs cmd there (the mount dies with it). */
export function mountAndRun(volumePath: string, m: HostMount, cmd: string[]): ToolResult {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'katavol-resize-'));
  try {
    const script = `mount -t "$0" "$1" "$2" || exit 1; ${cmd.length ? 'shift 2; exec "$@"' : 'exit 0'}`;
    return runTool(volumePath, 'unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, m.fstype, m.device, tmp, ...cmd], 'util-linux');
  } finally {
    fs.rmdirSync(tmp);
  }
}

/**
 * resize2fs grows a filesystem online only when it finds it in its own mount table. A container's
 * mount lives in another namespace (and cannot be bind-mounted from there), so resize2fs runs in a
 * private namespace where the same device is mounted once more: the same superblock, gone with it.
 */
function growOnline(volumePath: string, dir: string, m: HostMount, grown: string): void {
  // Stryker disable all: reached only with CAP_SYS_RESOURCE (online growth), which this host lacks; the "with CAP_SYS_RESOURCE" cases of test/volumes/resize.test.ts cover it where the capability exists
  const r = mountAndRun(volumePath, m, ['resize2fs', m.device]);
  if (r.status !== 0) {
    throw new VolumeError(volumePath, `grew ${grown}, but growing the mounted filesystem failed: ${r.stderr.split('\n').pop()}`,
      `the filesystem keeps its old size; resize again once that is fixed (the image and loop device already have the new size)`, dir);
  }
  // Stryker restore all
}
