// PCI addresses as vfiovol devices name them, and the sysfs facts runtime-rs reads for them.
import * as fs from 'fs';
import * as path from 'path';

/** A vfiovol device: a PCI function, or a whole VFIO group. */
export type VfioTarget = { kind: 'bdf'; dbdf: string } | { kind: 'group'; group: string };

const BDF = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;
const VFIO_GROUP = /^\/dev\/vfio\/([0-9]+)$/;

/**
 * Parses `BB:DD.F`, `DDDD:BB:DD.F` (domain defaults to 0000; hex case-normalised to lowercase, as
 * sysfs spells it) or `/dev/vfio/N`. Returns undefined for anything else.
 */
export function parseVfioDevice(device: string): VfioTarget | undefined {
  const m = BDF.exec(device);
  if (m) {
    const slot = parseInt(m[3], 16);
    if (slot > 0x1f) return undefined; // the device number is 5 bits
    return { kind: 'bdf', dbdf: `${(m[1] ?? '0000').toLowerCase()}:${m[2].toLowerCase()}:${m[3].toLowerCase()}.${m[4]}` };
  }
  const g = VFIO_GROUP.exec(device);
  if (g) return { kind: 'group', group: String(Number(g[1])) };
  return undefined;
}

/** True for a sysfs PCI device name `DDDD:BB:DD.F` (lowercase). */
export function isDbdf(name: string): boolean {
  return /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(name);
}

/** `BB:DD.F` of a `DDDD:BB:DD.F` (Dragonball's bus_slot_func has no domain). */
export function busSlotFunc(dbdf: string): string {
  return dbdf.slice(5);
}

/** Basename of a symlink's target, or undefined when there is no such link. */
function linkName(link: string): string | undefined {
  try {
    return path.basename(fs.readlinkSync(link));
  }
  // Stryker disable next-line BlockStatement: an empty catch returns undefined too
  catch {
    return undefined;
  }
}

export class Sysfs {
  constructor(readonly root: string) {}

  devicesDir(): string {
    return path.join(this.root, 'bus/pci/devices');
  }
  deviceDir(dbdf: string): string {
    return path.join(this.devicesDir(), dbdf);
  }
  groupDevicesDir(group: string): string {
    return path.join(this.root, 'kernel/iommu_groups', group, 'devices');
  }

  /** Basename of the device's iommu_group link, or undefined if it has none. */
  iommuGroupOf(dbdf: string): string | undefined {
    return linkName(path.join(this.deviceDir(dbdf), 'iommu_group'));
  }

  /** Basename of the device's driver link, or undefined when no driver is bound. */
  driverOf(dbdf: string): string | undefined {
    return linkName(path.join(this.deviceDir(dbdf), 'driver'));
  }

  /** A hex attribute such as `vendor` (0x8086), `device`, or `class` (0x060000). */
  hexAttr(dbdf: string, attr: string): number {
    const file = path.join(this.deviceDir(dbdf), attr);
    const text = fs.readFileSync(file, 'utf8').trim();
    if (!/^0x[0-9a-fA-F]+$/.test(text)) throw new Error(`${file} holds ${JSON.stringify(text)}, not a hex number`);
    return parseInt(text, 16);
  }

  exists(p: string): boolean {
    try {
      fs.lstatSync(p);
      return true;
    } catch {
      return false;
    }
  }
}

/** PCI classes runtime-rs leaves out of a group: host bridges (0x0600) and audio functions (0x0403). */
export const SKIPPED_CLASSES: Record<number, string> = { 0x0600: 'a host bridge', 0x0403: 'an audio function' };

/** Why a function with this 24-bit class code cannot be passed through, or undefined. */
export function skippedClass(classCode: number): string | undefined {
  return SKIPPED_CLASSES[classCode >> 8];
}
