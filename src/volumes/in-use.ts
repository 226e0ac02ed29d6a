// Is a directvol device already in use on the host? A filesystem mounted twice (once by the host or
// another container, once by ours or by a guest kernel) is corrupted, so before a volume is handed out
// read-write nothing else may use its device: no mount in any mount namespace (by device number,
// partitions included), no holder (dm, md, LVM), no swap, no loop device of someone else's over it.
// A read-only volume may share with read-only users only.
import * as fs from 'fs';
import * as path from 'path';
import { type HostMount, type LoopDevice, type LoopTable, devNumber, devNumberOf, findMountsByNumber, groupSameMounts, loopsBacking } from './host-device';
import { VolumeError } from './types';

export interface HostUse {
  kind: 'mount' | 'holder' | 'swap' | 'loop';
  /** The use only reads the device (a read-only superblock or loop device). */
  readOnly: boolean;
  /** "is mounted at /mnt/data (ext4, read-write)" -- follows the device's name. */
  what: string;
  /** The command that ends the use. */
  fix: string;
  /** A loop device's own users (mounts, holders, swap). */
  beyond?: HostUse[];
}

export interface HostUseOptions {
  /** Mount namespaces whose mounts are ours (the runc backend's own containers of this volume). */
  ownNamespaces?: ReadonlySet<string>;
  /** Skip loop devices over an image file (the runc backend judges its own loop devices itself). */
  skipLoops?: boolean;
  /** sysfs root, for the holder lookup ('/sys'). */
  sysRoot?: string;
  /** Attached loop devices, scanned once for many volumes (a Create's); default a scan per call. */
  loops?: LoopTable;
}

const modeOf = (ro: boolean): string => (ro ? 'read-only' : 'read-write');

/** The device number of a block device and of each of its partitions, with their names. */
function numbersOf(blockDev: string, sysRoot: string): Map<string, string> {
  const own = devNumber(blockDev);
  const out = new Map([[own, blockDev]]);
  const dir = path.join(sysRoot, 'dev', 'block', own);
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch { /* no sysfs entry: no partitions to add */ }
  for (const n of names) {
    try {
      if (!fs.existsSync(path.join(dir, n, 'partition'))) continue;
      out.set(fs.readFileSync(path.join(dir, n, 'dev'), 'utf8').trim(), `/dev/${n}`);
    } catch { /* gone meanwhile */ }
  }
  return out;
}

/** dm-0 -> 'device-mapper "vg0-data"', md0 -> 'md array'. */
function describeHolder(sysRoot: string, name: string): string {
  try {
    const dm = fs.readFileSync(path.join(sysRoot, 'class', 'block', name, 'dm', 'name'), 'utf8').trim();
    return `${name} (device-mapper "${dm}")`;
  } catch { /* not dm */ }
  return /^md/.test(name) ? `${name} (md RAID array)` : name;
}

/** "pid 7", "pids 7, 9 and 12", "pids 7, 9, 12 and 4 more". */
function pidList(ms: HostMount[]): string {
  const shown = ms.slice(0, 3).map((m) => String(m.pid));
  if (ms.length > 3) return `pids ${shown.join(', ')} and ${ms.length - 3} more`;
  return shown.length === 1 ? `pid ${shown[0]}` : `pids ${shown.slice(0, -1).join(', ')} and ${shown[shown.length - 1]}`;
}

/** Entries of /proc/swaps as (stat of the file or device, name). */
function swapEntries(): Array<{ st: fs.Stats; name: string }> {
  let text = '';
  // Stryker disable BlockStatement,ArrayDeclaration: every Linux host with swap support has /proc/swaps; without it there is no swap to find
  try {
    text = fs.readFileSync('/proc/swaps', 'utf8');
  } catch {
    return [];
  }
  // Stryker restore BlockStatement,ArrayDeclaration
  const out: Array<{ st: fs.Stats; name: string }> = [];
  for (const line of text.split('\n').slice(1)) {
    const name = line.split(/\s+/)[0]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (!name) continue;
    try {
      // A swap file deleted while active reads "<path> (deleted)": stat fails on it (a new file at the old path is not it).
      out.push({ st: fs.statSync(name), name });
    } catch { /* swap file deleted while active */ }
  }
  return out;
}

/** Every host use of a block device: mounts (itself and partitions), holders, swap, loop devices over it. */
function blockDeviceUses(dev: string, opts: HostUseOptions): HostUse[] {
  const sysRoot = opts.sysRoot ?? '/sys';
  const numbers = numbersOf(dev, sysRoot);
  const uses: HostUse[] = [];
  for (const [m, ...copies] of groupSameMounts(findMountsByNumber(numbers).filter((x) => !opts.ownNamespaces?.has(x.namespace)))) {
    const part = m.device === dev ? '' : ` (its partition ${m.device})`;
    const ns = m.ownNamespace ? '' : `, in the mount namespace of pid ${m.pid}`;
    const also = copies.length ? `, and the same mount is in ${copies.length} other mount namespace${copies.length > 1 ? 's' : ''} (${pidList(copies)})` : '';
    uses.push({
      kind: 'mount', readOnly: m.readOnly,
      what: `is mounted${part} at ${m.mountPoint} (${m.fstype}, ${modeOf(m.readOnly)}${ns})${also}`,
      fix: (m.ownNamespace ? `unmount it first (umount ${m.mountPoint})` : `unmount it first (nsenter -t ${m.pid} -m umount ${m.mountPoint}, or stop that container)`)
        + (copies.length ? `, and in the other namespace${copies.length > 1 ? 's' : ''} too (nsenter -t <pid> -m umount ${m.mountPoint}, or stop what runs there)` : ''),
    });
  }
  for (const [num, name] of numbers) {
    let holders: string[] = [];
    try {
      holders = fs.readdirSync(path.join(sysRoot, 'dev', 'block', num, 'holders'));
    } catch { /* no holders directory */ }
    if (!holders.length) continue;
    const part = name === dev ? '' : ` (its partition ${name})`;
    uses.push({
      kind: 'holder', readOnly: false,
      what: `is held${part} by ${holders.map((h) => describeHolder(sysRoot, h)).join(', ')} (${path.join(sysRoot, 'class', 'block', path.basename(name), 'holders')})`,
      fix: 'give the container the device on top instead, or release it first (dmsetup remove, vgchange -an, mdadm --stop)',
    });
  }
  for (const s of swapEntries()) {
    // Stryker disable next-line ConditionalExpression: a swap file's rdev is 0:0, the number of no block device
    if (!s.st.isBlockDevice()) continue;
    const num = devNumberOf(BigInt(s.st.rdev));
    const hit = [...numbers].find(([n]) => n === num);
    if (hit) uses.push({ kind: 'swap', readOnly: false, what: `is in use as swap${hit[1] === dev ? '' : ` (its partition ${hit[1]})`} (/proc/swaps)`, fix: `swapoff ${s.name} first` });
  }
  return uses;
}

/**
 * What uses the device on the host. An image file: loop devices over it (with what uses each) and
 * swap; a block device: see blockDeviceUses. Anything else (sockets, PCI addresses) has no host use.
 */
export function hostUsesOf(volumePath: string, device: string, opts: HostUseOptions = {}): HostUse[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(device);
  } catch {
    return []; // the device checks report a missing device
  }
  if (st.isBlockDevice()) {
    const uses = blockDeviceUses(device, opts);
    for (const l of opts.skipLoops ? [] : loopsOver(device, opts)) uses.push(loopUse(l, opts));
    return uses;
  }
  // Stryker disable next-line ConditionalExpression: a directory, socket or character device is no swap file and backs no loop device; the checks below would find nothing either
  if (!st.isFile()) return [];
  const uses: HostUse[] = [];
  for (const s of swapEntries()) {
    // The same device and inode is the same file (a regular one, as st is).
    if (s.st.dev === st.dev && s.st.ino === st.ino) {
      uses.push({ kind: 'swap', readOnly: false, what: `is in use as a swap file (/proc/swaps)`, fix: `swapoff ${s.name} first` });
    }
  }
  if (!opts.skipLoops) for (const l of loopsOver(device, opts)) uses.push(loopUse(l, opts));
  return uses;
}

function loopsOver(device: string, opts: HostUseOptions): LoopDevice[] {
  return opts.loops ? opts.loops.backing(device) : loopsBacking(device);
}

/** A loop device over the volume's device, and what uses that loop device in turn. */
function loopUse(l: { device: string; readOnly: boolean }, opts: HostUseOptions): HostUse {
  // Stryker disable next-line ArrayDeclaration: kept only when the loop device is detached between the scan and this look (a race)
  let beyond: HostUse[] = [];
  try {
    beyond = blockDeviceUses(l.device, opts);
  } catch { /* detached meanwhile */ }
  const then = beyond.length ? `, which ${beyond.map((u) => u.what).join(' and ')}` : '';
  return {
    kind: 'loop', readOnly: l.readOnly && beyond.every((u) => u.readOnly),
    what: `is attached ${modeOf(l.readOnly)} to loop device ${l.device}${then}`,
    fix: `${beyond.length ? `${beyond.map((u) => u.fix).join(', ')}, then ` : ''}detach it (losetup -d ${l.device})`,
    beyond,
  };
}

/** The uses that conflict with handing the device out read-write, or read-only. */
export function conflictingUses(uses: HostUse[], readOnly: boolean): HostUse[] {
  return readOnly ? uses.filter((u) => !u.readOnly) : uses;
}

/** The one sentence every caller prints: device, each use, and why that is refused. */
export function describeUses(device: string, uses: HostUse[], readOnly: boolean): string {
  const kind = (() => {
    try {
      return fs.statSync(device).isBlockDevice() ? 'block device' : 'image';
    } catch {
      return 'device';
    }
  })();
  const why = readOnly
    ? 'a read-only volume may share its device with read-only users only: the other user writes it underneath'
    : 'a read-write volume needs the device to itself: two kernels mounting one filesystem corrupt it';
  return `${kind} "${device}" is in use on the host: it ${uses.map((u) => u.what).join('; it ')}; ${why}`;
}

export function fixOf(uses: HostUse[], readOnly: boolean): string {
  const fixes = [...new Set(uses.map((u) => u.fix))].join('; ');
  return readOnly ? fixes : `${fixes}; or, if the other users only read it, mount the volume read-only (options=rbind:ro)`;
}

/** Throws a VolumeError (a Create refusal, code 9) when something on the host conflicts with this use. */
export function refuseHostUse(v: { volumePath: string; device: string; readOnly: boolean; file?: string }, opts: HostUseOptions = {}): void {
  const clash = conflictingUses(hostUsesOf(v.volumePath, v.device, opts), v.readOnly);
  if (!clash.length) return;
  throw new VolumeError(v.volumePath, describeUses(v.device, clash, v.readOnly), fixOf(clash, v.readOnly), v.file);
}
