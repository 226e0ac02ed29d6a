// `direct-volume stats`: what the host knows about a volume, as JSON. Unlike kata-ctl (which asks a
// Kata shim and is broken end to end), this reads the device, its loop devices and their mounts.
import * as fs from 'fs';
import { type Registry, type SandboxUse } from './registry';
import { VolumeError, messageOf } from './types';
import { spdkSocketPath } from './device';
import { type FsUsage, blockDeviceSize, ext4Header, ext4Usage, findHostMounts, groupSameMounts, isExtFs, loopDevicesOf, mountedUsage } from './host-device';

export interface VolumeStats {
  volumePath: string;
  directory: string;
  volumeType: string;
  device: string;
  fstype: string;
  deviceKind: 'file' | 'block' | 'socket' | 'vfio';
  sizeBytes?: number;
  allocatedBytes?: number;
  loopDevices?: string[];
  mounts: Array<{ pid: number; mountPoint: string; device: string; fstype: string }>;
  /** Filesystem usage: statfs of a host-backend mount, or the superblock of an unmounted ext2/3/4 image. */
  usage: FsUsage | null;
  usageError?: string;
  sandboxes: SandboxUse[];
}

export function volumeStats(reg: Registry, volumePath: string): VolumeStats {
  const { info, dir } = reg.read(volumePath);
  const base = { volumePath, directory: dir, volumeType: info.volumeType, device: info.device, fstype: info.fsType };
  const tail = { mounts: [] as VolumeStats['mounts'], usage: null as FsUsage | null, sandboxes: reg.sandboxesOf(volumePath) };
  if (info.volumeType === 'vfiovol') return { ...base, deviceKind: 'vfio', ...tail };
  if (info.volumeType !== 'directvol') {
    const sock = spdkSocketPath(info.device);
    if (!fs.existsSync(sock)) throw new VolumeError(volumePath, `vhost-user socket ${sock} does not exist`, 'start the SPDK vhost target or fix the registry entry with katavol direct-volume add');
    return { ...base, deviceKind: 'socket', ...tail };
  }

  let st: fs.Stats;
  try {
    st = fs.statSync(info.device);
  } catch (e) {
    throw new VolumeError(volumePath, `device ${info.device} cannot be read: ${messageOf(e)}`, 'restore the device or register the volume again with katavol direct-volume add', dir, e);
  }
  const stats: VolumeStats = { ...base, deviceKind: st.isBlockDevice() ? 'block' : 'file', sizeBytes: 0, ...tail };
  let blockDevs: string[];
  if (st.isBlockDevice()) {
    stats.sizeBytes = blockDeviceSize(info.device);
    blockDevs = [info.device];
  } else {
    stats.sizeBytes = st.size;
    stats.allocatedBytes = st.blocks * 512;
    stats.loopDevices = loopDevicesOf(info.device);
    blockDevs = stats.loopDevices;
  }
  // One entry per mount: the copies other namespaces hold of it are not more places it is mounted.
  const mounts = groupSameMounts(findHostMounts(blockDevs)).map((g) => g[0]);
  stats.mounts = mounts.map((m) => ({ pid: m.pid, mountPoint: m.mountPoint, device: m.device, fstype: m.fstype }));
  try {
    if (mounts.length) stats.usage = mountedUsage(mounts[0]);
    else if (isExtFs(info.fsType)) stats.usage = ext4Usage(ext4Header(volumePath, info.device));
  } catch (e) {
    stats.usageError = messageOf(e);
  }
  return stats;
}
