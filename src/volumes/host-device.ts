// Host-side facts about a volume's device: size, loop devices backing an image file, and where those
// are mounted in any mount namespace (containers of the runc host backend have their own).
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { VolumeError } from './types';

/**
 * Where host tools are looked for: the caller's PATH, then /usr/sbin and /sbin, which a non-login shell
 * may not have on it. Read when a tool runs (the environment is the caller's, passed in or this
 * process's), never frozen when the module loads.
 */
export function toolPath(env: NodeJS.ProcessEnv = process.env): string {
  // No PATH: no empty entry either (an empty entry means the current directory to execvp).
  return `${env.PATH ? `${env.PATH}:` : ''}/usr/sbin:/sbin:/usr/bin:/bin`;
}

export interface ToolResult {
  status: number;
  stdout: string;
  stderr: string;
  command: string;
}

/** Runs a host tool; a tool that cannot start (not installed) throws a VolumeError naming the package. */
export function runTool(volumePath: string, cmd: string, args: string[], pkg: string, env: NodeJS.ProcessEnv = process.env): ToolResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...env, PATH: toolPath(env) } });
  const command = [cmd, ...args].join(' ');
  if (r.error) {
    throw new VolumeError(volumePath, `cannot run ${cmd}: ${r.error.message}`, `install ${pkg} (apt-get install ${pkg})`, undefined, r.error);
  }
  return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr.trim(), command };
}

/** "major:minor" of a block device node. */
export function devNumber(blockDev: string): string {
  return devNumberOf(fs.statSync(blockDev, { bigint: true }).rdev);
}

/** "major:minor" of a dev_t (glibc's encoding). */
export function devNumberOf(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Size in bytes of a block device, from sysfs. */
export function blockDeviceSize(blockDev: string): number {
  // Stryker disable next-line StringLiteral: without an encoding Number() reads the Buffer's text the same
  return Number(fs.readFileSync(`/sys/dev/block/${devNumber(blockDev)}/size`, 'utf8')) * 512; // Number() skips the newline
}

/**
 * Loop devices currently backed by the file (same inode), with their read-only flag, from sysfs:
 * the same answer as `losetup --associated`, without an exec per volume on the Create path
 * (a block device node works too: its loop devices name the node).
 */
export function loopsBacking(file: string, sysBlock = '/sys/block'): Array<{ device: string; readOnly: boolean }> {
  return LoopTable.scan(sysBlock).backing(file);
}

export interface LoopDevice { device: string; readOnly: boolean }

/**
 * Every attached loop device by the file (or device node) behind it, from one pass over sysfs: a Create
 * checks all its volumes against one scan instead of one each (a host may keep dozens attached).
 * `lazy()`: scanned on first use only, so a Create without image files scans nothing.
 */
export class LoopTable {
  private table: Map<string, LoopDevice[]> | undefined;
  private constructor(private readonly sysBlock: string) {}

  static scan(sysBlock = '/sys/block'): LoopTable {
    const t = new LoopTable(sysBlock);
    t.load();
    return t;
  }

  static lazy(sysBlock = '/sys/block'): LoopTable {
    return new LoopTable(sysBlock);
  }

  /** The loop devices over `file`, sorted by number; none when it cannot be stat'ed. */
  backing(file: string): LoopDevice[] {
    let target: fs.Stats;
    try {
      target = fs.statSync(file);
    } catch {
      return [];
    }
    return [...(this.load().get(`${target.dev}:${target.ino}`) ?? [])];
  }

  private load(): Map<string, LoopDevice[]> {
    // Stryker disable next-line ConditionalExpression: a cache; a scan again gives the same answer, only slower
    if (this.table) return this.table;
    const table = new Map<string, LoopDevice[]>();
    let names: string[] = [];
    try { names = fs.readdirSync(this.sysBlock); } catch { /* no sysfs: nothing can be attached either */ }
    for (const name of names) {
      // Only an attached loop device has loop/ (a stat, not a failed open: hosts keep dozens detached).
      if (!/^loop\d+$/.test(name) || !fs.existsSync(`${this.sysBlock}/${name}/loop`)) continue;
      try {
        // A deleted backing file reads "<path> (deleted)": stat fails on it, so the loop device is nobody's
        // (a new file at the old path is not what it holds).
        const st = fs.statSync(fs.readFileSync(`${this.sysBlock}/${name}/loop/backing_file`, 'utf8').trim());
        const key = `${st.dev}:${st.ino}`;
        const entry = { device: `/dev/${name}`, readOnly: fs.readFileSync(`${this.sysBlock}/${name}/ro`, 'utf8').trim() === '1' };
        table.set(key, [...(table.get(key) ?? []), entry]);
      } catch { /* not attached, or detached meanwhile */ }
    }
    for (const list of table.values()) list.sort((a, b) => a.device.localeCompare(b.device, 'en', { numeric: true }));
    this.table = table;
    return table;
  }
}

/** The loop devices over an image file or block device. */
export function loopDevicesOf(file: string): string[] {
  return loopsBacking(file).map((l) => l.device);
}

export interface HostMount {
  /** A process in the mount namespace holding the mount (statfs goes through /proc/<pid>/root). */
  pid: number;
  /** True when that namespace is ours (tools such as resize2fs see the mount directly). */
  ownNamespace: boolean;
  /** The namespace's identity, as /proc/<pid>/ns/mnt reads ("mnt:[4026531841]"). */
  namespace: string;
  mountPoint: string;
  source: string;
  fstype: string;
  /** The superblock is read-only (a read-write superblock can be written through any of its mounts). */
  readOnly: boolean;
  /** The device node this mount is of (one of the devices looked for). */
  device: string;
}

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Mounts of the given block devices in every mount namespace on the host, one per (namespace, mount point). */
export function findHostMounts(devices: string[]): HostMount[] {
  const byNumber = new Map<string, string>();
  for (const d of devices) byNumber.set(devNumber(d), d);
  return findMountsByNumber(byNumber);
}

/** Same, by "major:minor" (a device's partitions have their own numbers); the map's values name them. */
export function findMountsByNumber(byNumber: Map<string, string>): HostMount[] {
  if (byNumber.size === 0) return [];
  let ownNs = '';
  try {
    ownNs = fs.readlinkSync('/proc/self/ns/mnt');
  } catch {
    /* no /proc/self/ns: treat every namespace as foreign */
  }
  const seen = new Set<string>();
  const out: HostMount[] = [];
  const pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  // Our own namespace first, so a mount visible to us is reported with our pid.
  pids.unshift(process.pid);
  for (const pid of pids) {
    let ns: string;
    let text: string;
    try {
      ns = fs.readlinkSync(`/proc/${pid}/ns/mnt`);
      if (seen.has(ns)) continue;
      text = fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
    } catch {
      continue; // exited, or a kernel thread
    }
    seen.add(ns);
    for (const line of text.split('\n')) {
      const f = line.split(' ');
      const device = byNumber.get(f[2]);
      if (!device) continue;
      const sep = f.indexOf('-', 6);
      const superOptions = f[sep + 3].split(','); // the kernel always writes fstype, source and super options after "-"
      out.push({
        pid, ownNamespace: ns === ownNs, namespace: ns, mountPoint: unescapeMount(f[4]), fstype: f[sep + 1],
        source: unescapeMount(f[sep + 2]), readOnly: superOptions.includes('ro'), device,
      });
    }
  }
  return out;
}

/**
 * Mounts grouped by what they are (device, mount point, filesystem, mode), our own namespace's first:
 * a namespace made while the device was mounted (a systemd service's, a container's) holds a copy of
 * the mount, and a host may have dozens; each is said once, with the namespaces that hold copies.
 */
export function groupSameMounts(mounts: HostMount[]): HostMount[][] {
  const groups = new Map<string, HostMount[]>();
  for (const m of mounts) {
    const key = JSON.stringify([m.device, m.mountPoint, m.fstype, m.readOnly]);
    const g = groups.get(key);
    if (g) g.push(m);
    else groups.set(key, [m]);
  }
  return [...groups.values()];
}

export interface FsUsage {
  source: 'statfs' | 'dumpe2fs';
  totalBytes: number;
  usedBytes: number;
  availableBytes: number;
  inodes?: number;
  inodesFree?: number;
}

/** Usage of a mounted filesystem, as df reports it, through the holder's view of its root. */
export function mountedUsage(m: HostMount): FsUsage {
  const s = fs.statfsSync(path.join(`/proc/${m.pid}/root`, m.mountPoint));
  return {
    source: 'statfs',
    totalBytes: s.blocks * s.bsize,
    usedBytes: (s.blocks - s.bfree) * s.bsize,
    availableBytes: s.bavail * s.bsize,
    inodes: s.files,
    inodesFree: s.ffree,
  };
}

export interface Ext4Header {
  blockSize: number;
  blockCount: number;
  freeBlocks: number;
  reservedBlocks: number;
}

/** The superblock summary of an unmounted ext2/3/4 filesystem (`dumpe2fs -h`). */
export function ext4Header(volumePath: string, target: string): Ext4Header {
  const r = runTool(volumePath, 'dumpe2fs', ['-h', target],
    // Stryker disable next-line StringLiteral: the package is named only when dumpe2fs is not installed (runTool's message is tested in host-device.test.ts)
    'e2fsprogs');
  if (r.status !== 0) throw new VolumeError(volumePath, `${r.command} failed: ${r.stderr.split('\n').pop()}`, `check that ${target} holds an ext2/3/4 filesystem`);
  const num = (label: string): number => {
    const m = new RegExp(`^${label}:\\s+(\\d+)`, 'm').exec(r.stdout);
    // Stryker disable next-line all: reached only with a dumpe2fs whose output lacks the field (e2fsprogs has printed these since 1.x)
    if (!m) throw new VolumeError(volumePath, `${r.command} printed no "${label}"`, 'check the e2fsprogs installation');
    return Number(m[1]);
  };
  return { blockSize: num('Block size'), blockCount: num('Block count'), freeBlocks: num('Free blocks'), reservedBlocks: num('Reserved block count') };
}

export function ext4Usage(h: Ext4Header): FsUsage {
  return {
    source: 'dumpe2fs',
    totalBytes: h.blockCount * h.blockSize,
    usedBytes: (h.blockCount - h.freeBlocks) * h.blockSize,
    availableBytes: Math.max(0, h.freeBlocks - h.reservedBlocks) * h.blockSize,
  };
}

/** True when the file starts with an ext2/3/4 superblock (magic 0xEF53 at byte 1080). */
export function hasExtSuperblock(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(2);
    return fs.readSync(fd, b, 0, 2, 1080) === 2 && b[0] === 0x53 && b[1] === 0xef;
  } finally {
    fs.closeSync(fd);
  }
}

export const isExtFs = (fstype: string): boolean => /^ext[234]$/.test(fstype);

/** Whether this process holds an effective capability (bit number as in linux/capability.h). */
export function hasEffectiveCapability(bit: number): boolean {
  const status = String(fs.readFileSync('/proc/self/status'));
  // Stryker disable next-line Regex: the kernel writes "CapEff:\t<16 hex digits>" on a line of its own; the anchors and one-or-more make no difference on it
  const m = /^CapEff:\s+([0-9a-f]+)$/m.exec(status);
  return !!m && (BigInt('0x' + m[1]) & (1n << BigInt(bit))) !== 0n;
}

export const CAP_SYS_RESOURCE = 24;

/** The absolute path of a host tool, or undefined when it is not installed. */
export function findTool(cmd: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of toolPath(env).split(':')) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}
