// Host checks of a mountInfo's device by volume type, done before anything is written.
import * as fs from 'fs';
import * as path from 'path';
import { type MountInfo, VOLUME_TYPES, VolumeError } from './types';
import { kindOf } from './files';

export { kindOf };

const BDF = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$/;
const VFIO_GROUP = /^\/dev\/vfio\/[0-9]+$/;

/** The part of an spdkvol/spoolvol device after an optional `spdk://` / `spool://` scheme. */
export function spdkSocketPath(device: string): string {
  const m = /^(spdk|spool):\/\/(.*)$/.exec(device);
  return m ? m[2] : device;
}

/** True when `device` is a PCI address in one of the forms runtime-rs accepts. */
export function isPciAddress(device: string): boolean {
  return BDF.test(device);
}

/** The device as it should be stored: PCI addresses in lower case (sysfs names are lower case; runtime-rs does not normalise). */
export function normalizeDevice(info: MountInfo): string {
  return info.volumeType === 'vfiovol' && BDF.test(info.device) ? info.device.toLowerCase() : info.device;
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch { /* missing or unreadable: the callers say which path */ }
  return undefined;
}

/** Trees where a missing path is a device or kernel object that must never be created by hand. */
const SYSTEM_TREES = ['/dev', '/proc', '/sys', '/run/udev'];
/** Filesystems whose mkfs tool Debian ships under that name. */
const MKFS = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'vfat', 'f2fs']);

/**
 * What to do about a directvol device that does not exist. Only a new image file in an ordinary
 * directory gets a command: nothing under /dev (a device node is the kernel's to create), nothing that
 * could format an existing path.
 */
export function missingDeviceAdvice(dev: string, fsType: string): string {
  const resolved = path.resolve(dev);
  if (SYSTEM_TREES.some((t) => resolved === t || resolved.startsWith(`${t}/`))) {
    return `attach the disk (check lsblk for its name) or correct "device"; katavol does not create device nodes`;
  }
  const mkfs = MKFS.has(fsType) ? ` && mkfs.${fsType} ${dev}` : '';
  const parent = statOrUndefined(path.dirname(resolved));
  const mkdir = parent?.isDirectory() ? '' : `mkdir -p ${path.dirname(resolved)} && `;
  return `correct "device", or create a new image file there: ${mkdir}truncate -s 1G ${dev}${mkfs}`;
}

export function validateDevice(info: MountInfo, volumePath: string): void {
  const bad = (problem: string, fix: string): VolumeError => new VolumeError(volumePath, problem, fix);
  const dev = info.device;
  if (dev === '') throw bad('"device" is empty', 'set "device" to the host block device or image file (directvol), socket (spdkvol) or PCI address (vfiovol)');

  switch (info.volumeType) {
    case 'directvol': {
      if (!path.isAbsolute(dev)) throw bad(`device "${dev}" is a relative path (the runtime resolves it from its own directory)`, `give the absolute path, e.g. "${path.resolve(dev)}"`);
      const st = statOrUndefined(dev);
      if (!st) throw bad(`device "${dev}" does not exist`, missingDeviceAdvice(dev, info.fsType));
      if (!st.isFile() && !st.isBlockDevice()) {
        throw bad(`device "${dev}" is ${kindOf(st)}; a directvol device must be a regular file (disk image) or a block device`, 'point "device" at an image file or a block device such as /dev/sdb');
      }
      return;
    }
    case 'spdkvol':
    case 'spoolvol': {
      const sock = spdkSocketPath(dev);
      if (!path.isAbsolute(sock)) throw bad(`device "${dev}" is not an absolute socket path`, 'give the vhost-user socket path, e.g. "/var/tmp/spdk/vhost.0" or "spdk:///var/tmp/spdk/vhost.0"');
      const st = statOrUndefined(sock);
      if (!st) throw bad(`vhost-user socket "${sock}" does not exist`, 'start the SPDK vhost target first (it creates the socket) or correct "device"');
      if (!st.isSocket()) throw bad(`device "${sock}" is ${kindOf(st)}, not a unix socket`, `point "device" at the SPDK vhost-user socket`);
      return;
    }
    case 'vfiovol': {
      if (BDF.test(dev) || VFIO_GROUP.test(dev)) return;
      throw bad(`device "${dev}" is not a PCI address (BB:DD.F or DDDD:BB:DD.F) or a VFIO group (/dev/vfio/N)`, 'give e.g. "0000:3b:00.1" or "/dev/vfio/12"');
    }
    default:
      throw bad(`volume-type "${String(info.volumeType)}" is unknown`, `use ${VOLUME_TYPES.slice(0, -1).join(', ')} or ${VOLUME_TYPES[VOLUME_TYPES.length - 1]}`);
  }
}
