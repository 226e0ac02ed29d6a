// The "fstype" of a volume: a filesystem Linux knows (checked at add), and the filesystem the device
// really holds (its superblock, checked before Create), so a typo or a wrong type fails with the
// volume named instead of as runc's "no such device" or a guest mount error.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** Block filesystems of mainline Linux, known even where their module is not installed on this host (a guest kernel may have it). */
const BLOCK_FILESYSTEMS = [
  'ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'vfat', 'msdos', 'exfat', 'ntfs', 'ntfs3', 'f2fs', 'iso9660', 'udf',
  'squashfs', 'erofs', 'jfs', 'reiserfs', 'nilfs2', 'ocfs2', 'gfs2', 'bcachefs', 'hfs', 'hfsplus', 'minix', 'cramfs', 'romfs', 'ufs',
];

export interface KnownFilesystems {
  /** Names that can live on a block device. */
  block: Set<string>;
  /** Names the kernel lists as nodev (tmpfs, proc, ...): never on a device. */
  nodev: Set<string>;
}

/** Where the kernel's lists are read (tests lay out their own). */
export interface KernelFiles {
  /** /proc/filesystems */
  procFilesystems?: string;
  /** The running kernel's fs modules: /lib/modules/<release>/kernel/fs */
  modulesDir?: string;
}

/** What this host's kernel lists in /proc/filesystems and ships as fs modules, plus mainline's block filesystems. */
export function knownFilesystems(files: KernelFiles = {}): KnownFilesystems {
  const block = new Set(BLOCK_FILESYSTEMS);
  const nodev = new Set<string>();
  try {
    for (const line of fs.readFileSync(files.procFilesystems ?? '/proc/filesystems', 'utf8').split('\n')) {
      // Stryker disable next-line Regex: the kernel writes "nodev\t<name>" or "\t<name>"; the anchors and one-or-more make no difference on that
      const m = /^(nodev)?\s+(\S+)$/.exec(line);
      // Stryker disable next-line ConditionalExpression: only the last, empty line fails to match; throwing there (into the catch below) would lose nothing
      if (!m) continue;
      (m[1] ? nodev : block).add(m[2]);
    }
  } catch { /* no /proc: the built-in list alone */ }
  // Stryker disable next-line StringLiteral: this host has no /lib/modules; the walk is tested on a tree laid out as the kernel's (fstype.test.ts)
  const modDir = files.modulesDir ?? path.join('/lib/modules', os.release(), 'kernel/fs');
  const walk = (dir: string, depth: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory() && depth < 2) walk(path.join(dir, e.name), depth + 1);
      const m = /^([\w-]+)\.ko(\.(xz|zst|gz))?$/.exec(e.name);
      if (m && !nodev.has(m[1])) block.add(m[1]);
    }
  };
  walk(modDir, 0);
  for (const n of nodev) block.delete(n);
  return { block, nodev };
}

/** Edits (insert, delete, substitute, swap neighbours) from a to b. */
function editDistance(a: string, b: string): number {
  // Row i starts with i; each cell is written before it is read, left to right, top to bottom.
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      // A swap of two neighbours ("xsf") is one typo. (Before the first character, a[-1] and b[-1] read undefined, which matches none.)
      if (a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest of `names` to `word` (at most 2 edits, or one a prefix of the other), for "did you mean". */
export function closest(word: string, names: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const d = editDistance(word.toLowerCase(), n.toLowerCase());
    if (d < bestD) {
      best = n;
      bestD = d;
    }
  }
  return bestD <= Math.min(2, Math.max(1, Math.floor(word.length / 2))) ? best : undefined; // no names: bestD is Infinity
}

/** Undefined when fstype is a block filesystem Linux knows; else the problem and the fix. */
export function fsTypeProblem(fsType: string, known: KnownFilesystems = knownFilesystems()): { problem: string; fix: string } | undefined {
  if (known.block.has(fsType)) return undefined;
  if (known.nodev.has(fsType)) {
    return { problem: `fstype "${fsType}" is a filesystem that never lives on a device (the kernel lists it as nodev)`, fix: 'set "fstype" to the filesystem on the device, e.g. "ext4" (blkid -p <device> shows it)' };
  }
  const meant = closest(fsType, known.block);
  return {
    problem: `fstype "${fsType}" is not a filesystem Linux knows (not in /proc/filesystems, the kernel's fs modules or mainline's block filesystems)`,
    fix: meant ? `did you mean "fstype":"${meant}"?` : 'set "fstype" to the filesystem on the device, e.g. "ext4" (blkid -p <device> shows it)',
  };
}

/** Filesystems recognised by their superblock; for these a declared type is checked against the device. */
export const DETECTABLE = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs']);

function readAt(fd: number, pos: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  const n = fs.readSync(fd, b, 0, len, pos);
  return b.subarray(0, n);
}

/**
 * The filesystem a device or image holds, from its superblock: ext2/ext3/ext4 (by feature flags),
 * xfs, btrfs, or a few others that are worth naming; undefined when none is recognised.
 */
export function detectFsType(device: string): string | undefined {
  const fd = fs.openSync(device, 'r');
  try {
    const ext = readAt(fd, 1024, 104);
    if (ext.length === 104 && ext.readUInt16LE(56) === 0xef53) {
      const compat = ext.readUInt32LE(92);
      const incompat = ext.readUInt32LE(96);
      const roCompat = ext.readUInt32LE(100);
      // extents, 64bit, flex_bg, mmp...; huge_file, gdt_csum, dir_nlink, extra_isize, metadata_csum: ext4 only.
      if (incompat & 0xffc0 || roCompat & 0x478) return 'ext4';
      return compat & 0x4 ? 'ext3' : 'ext2';
    }
    if (readAt(fd, 0, 4).toString('latin1') === 'XFSB') return 'xfs';
    if (readAt(fd, 0x10040, 8).toString('latin1') === '_BHRfS_M') return 'btrfs';
    if (readAt(fd, 0, 4).toString('latin1') === 'hsqs') return 'squashfs';
    const f2 = readAt(fd, 1024, 4);
    if (f2.length === 4 && f2.readUInt32LE(0) === 0xf2f52010) return 'f2fs';
    if (readAt(fd, 32769, 5).toString('latin1') === 'CD001') return 'iso9660';
    if (readAt(fd, 4086, 10).toString('latin1') === 'SWAPSPACE2') return 'swap';
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether the kernel mounts a filesystem found as `found` when asked for `declared` (ext4 mounts every ext; ext2 mounts ext3). */
export function fsTypeCompatible(declared: string, found: string): boolean {
  if (declared === found) return true;
  if (declared === 'ext4') return found === 'ext2' || found === 'ext3';
  return declared === 'ext2' && found === 'ext3';
}

/**
 * Undefined when the device's superblock agrees with the declared fstype (or cannot tell: a type
 * katavol does not recognise, or a device it cannot read); else the problem and the fix.
 */
export function superblockMismatch(device: string, declared: string): { found: string; problem: string; fix: string } | undefined {
  if (!DETECTABLE.has(declared)) return undefined;
  let found: string | undefined;
  try {
    const st = fs.statSync(device);
    if (!st.isFile() && !st.isBlockDevice()) return undefined;
    found = detectFsType(device);
  } catch {
    return undefined; // missing or unreadable: the device checks report that
  }
  if (found && fsTypeCompatible(declared, found)) return undefined;
  const foundText = found ?? 'no filesystem katavol recognises (ext2/3/4, xfs, btrfs, ...)';
  return {
    found: found ?? 'none',
    problem: `declares fstype "${declared}" but device ${device} holds ${foundText}`,
    fix: found && found !== 'swap'
      ? `register it with "fstype":"${found}" (katavol direct-volume add), or point "device" at the ${declared} image`
      : `point "device" at the ${declared} image or disk, or correct "fstype" (blkid -p ${device} shows what it holds)`,
  };
}
