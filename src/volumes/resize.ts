// `direct-volume resize`: grow a raw-file directvol volume and its ext2/3/4 filesystem, offline or,
// when the runc host backend has it mounted through a loop device, online. Never shrinks; refuses
// while a VM uses the volume (a running VM does not see its disk grow, and Kata's agent cannot resize).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Registry } from './registry';
import { VolumeError } from './types';
import { HostMount, findHostMounts, hasExtSuperblock, isExtFs, loopDevicesOf, runTool } from './host-device';
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
    const bad = (problem: string, fix: string): VolumeError => new VolumeError(volumePath, problem, fix, dir);
    if (info.volumeType !== 'directvol') {
      throw bad(`is a ${info.volumeType} volume; katavol resizes directvol volumes backed by an image file`, 'grow the device with its own tools');
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(info.device);
    } catch (e) {
      throw bad(`device ${info.device} cannot be read: ${(e as Error).message}`, 'restore the image file or register the volume again');
    }
    if (!st.isFile()) throw bad(`device ${info.device} is a block device, not an image file`, 'grow the block device with its own tools (e.g. lvextend), then resize2fs it');

    const vms = reg.sandboxesOf(volumePath).filter((s) => s.backend !== HOST_BACKEND);
    if (vms.length) {
      const who = vms.map((s) => `${s.id} (${s.backend || 'recorded by Kata'})`).join(', ');
      throw bad(`is in use by VM sandbox ${who}; a running VM does not see its disk grow and Kata's agent cannot resize it`, 'stop those sandboxes first, then resize');
    }
    // Mounts are grown online below; swap, or a dm/md device over the image, would not see it grow
    // (or would be corrupted by a filesystem resize underneath).
    const blocking = hostUsesOf(volumePath, info.device).filter((u) => u.kind === 'swap' || u.kind === 'holder' || u.beyond?.some((b) => b.kind !== 'mount'));
    if (blocking.length) {
      const fixes = [...new Set(blocking.map((u) => u.fix))];
      throw bad(`${describeUses(info.device, blocking, false)}; katavol does not resize a device something else builds on`, `${fixes.join('; ')}; then resize again`);
    }
    const oldSize = st.size;
    if (newSize < oldSize) throw bad(`new size ${newSize} is smaller than the current ${oldSize} bytes of ${info.device}; katavol never shrinks a volume`, `give a size of at least ${oldSize}`);

    const ext = isExtFs(info.fsType);
    if (ext && !hasExtSuperblock(info.device)) {
      throw bad(`fstype is ${info.fsType} but ${info.device} has no ext2/3/4 superblock`, 'correct "fstype" with katavol direct-volume add, or create the filesystem (mkfs.ext4)');
    }
    const loops = loopDevicesOf(volumePath, info.device);
    const mounts = findHostMounts(loops);

    // Offline: check the filesystem before changing anything, as resize2fs requires.
    const offlineTarget = loops[0] ?? info.device;
    if (ext && !mounts.length) {
      const fsck = runTool(volumePath, 'e2fsck', ['-f', '-p', offlineTarget], 'e2fsprogs');
      if (fsck.status >= 4) throw bad(`${fsck.command} found errors it could not fix (exit ${fsck.status}): ${fsck.stderr}`, `repair it with e2fsck -f ${offlineTarget}, then resize again`);
    }

    if (newSize > oldSize) fs.truncateSync(info.device, newSize);
    for (const loop of loops) {
      const r = runTool(volumePath, 'losetup', ['-c', loop], 'mount');
      if (r.status !== 0) throw bad(`grew ${info.device} to ${newSize} bytes, but ${r.command} failed: ${r.stderr}`, `run losetup -c ${loop} by hand`);
    }
    const grown = `${info.device} ${formatSize(oldSize)} -> ${formatSize(newSize)}`;
    const result = { volumePath, device: info.device, oldSize, newSize, loopDevices: loops };
    if (!ext) {
      const fsNote = info.fsType ? `the ${info.fsType} filesystem was not grown; grow it from inside (e.g. xfs_growfs on its mount point)` : 'no fstype, so no filesystem was grown';
      return { ...result, filesystem: 'not-ext', summary: `resized direct volume ${volumePath}: ${grown}; ${fsNote}` };
    }

    if (mounts.length) {
      const m = mounts[0];
      growOnline(volumePath, dir, m, grown);
      return { ...result, filesystem: 'grown-online', summary: `resized direct volume ${volumePath}: ${grown}; ${info.fsType} grown online through ${m.device} (mounted at ${m.mountPoint}${m.ownNamespace ? '' : ` in the mount namespace of pid ${m.pid}`})` };
    }
    const r = runTool(volumePath, 'resize2fs', [offlineTarget], 'e2fsprogs');
    if (r.status !== 0) throw bad(`grew ${grown}, but ${r.command} failed: ${r.stderr}`, `the filesystem keeps its old size; run resize2fs ${offlineTarget} by hand`);
    return { ...result, filesystem: 'grown-offline', summary: `resized direct volume ${volumePath}: ${grown}; ${info.fsType} filesystem grown to fill it` };
  });
}

/**
 * resize2fs finds the mount point through its own mount table. A container's mount lives in another
 * namespace, so bind it into ours for the duration (a private temp mount of the same superblock).
 */
function growOnline(volumePath: string, dir: string, m: HostMount, grown: string): void {
  const fail = (what: string, fix: string): VolumeError => new VolumeError(volumePath, `grew ${grown}, but ${what}`, fix, dir);
  let tmp: string | undefined;
  try {
    if (!m.ownNamespace) {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'katavol-resize-'));
      const b = runTool(volumePath, 'mount', ['--bind', path.join(`/proc/${m.pid}/root`, m.mountPoint), tmp], 'mount');
      if (b.status !== 0) {
        fs.rmdirSync(tmp);
        tmp = undefined;
        throw fail(`${b.command} failed: ${b.stderr}`, `grow it from the host with nsenter -t ${m.pid} -m resize2fs ${m.device}`);
      }
      runTool(volumePath, 'mount', ['--make-private', tmp], 'mount');
    }
    const r = runTool(volumePath, 'resize2fs', [m.device], 'e2fsprogs');
    if (r.status !== 0) {
      const cap = /Permission denied/i.test(r.stderr) ? ' (online resize needs CAP_SYS_RESOURCE)' : '';
      throw fail(`${r.command} failed: ${r.stderr.split('\n').pop()}${cap}`, `the filesystem keeps its old size; run resize2fs ${m.device} as root with CAP_SYS_RESOURCE while it is mounted`);
    }
  } finally {
    if (tmp) {
      const u = runTool(volumePath, 'umount', [tmp], 'mount');
      // Only an unmounted directory is removed; a failed umount is left visible rather than hidden.
      if (u.status === 0) fs.rmdirSync(tmp);
    }
  }
}
