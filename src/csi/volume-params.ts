// StorageClass parameters and the volume_context keys, under Kata's names so a PersistentVolume made
// by either driver reads the same (csi-kata-directvolume utils.go: volumetype, fstype, is_directvolume,
// direct_volume_name, capacity_in_bytes). `device` is katavol's addition for spdkvol/vfiovol.
import * as path from 'path';
import { isPciAddress, normalizeDevice } from '../volumes/device';
import { invalidArgument } from './errors';
import { FS_TYPES } from './image';
import type { CsiVolumeType } from './state';

export const PARAM_VOLUME_TYPE = 'katacontainers.direct.volume/volumetype';
export const PARAM_FS_TYPE = 'katacontainers.direct.volume/fstype';
export const PARAM_DEVICE = 'katacontainers.direct.volume/device';
export const CTX_IS_DIRECT = 'is_directvolume';
export const CTX_NAME = 'direct_volume_name';
export const CTX_CAPACITY = 'capacity_in_bytes';

const VOLUME_TYPES: CsiVolumeType[] = ['directvol', 'spdkvol', 'vfiovol'];
const KNOWN = [PARAM_VOLUME_TYPE, PARAM_FS_TYPE, PARAM_DEVICE];

export interface VolumeParams {
  volumeType: CsiVolumeType;
  fsType: string;
  /** spdkvol/vfiovol only. */
  device: string;
}

/** Reads CreateVolume's parameters (keys case-insensitive, as Kata reads them) and the capability's fs_type. */
export function readParams(name: string, params: Record<string, string>, capFsTypes: string[]): VolumeParams {
  const fix = (what: string): string => `fix the StorageClass parameters: ${what}`;
  const got = new Map<string, string>();
  for (const [k, v] of Object.entries(params ?? {})) {
    const key = k.toLowerCase();
    if (!KNOWN.includes(key)) throw invalidArgument(name, `unknown StorageClass parameter ${JSON.stringify(k)}`, fix(`use only ${KNOWN.join(', ')}`));
    got.set(key, v);
  }
  const type = got.get(PARAM_VOLUME_TYPE) ?? 'directvol';
  if (!(VOLUME_TYPES as string[]).includes(type)) {
    throw invalidArgument(name, `volume type ${JSON.stringify(type)} is not one katavol provisions`, fix(`set ${PARAM_VOLUME_TYPE} to ${VOLUME_TYPES.join(', ')}`));
  }
  const fsTypes = [...new Set([got.get(PARAM_FS_TYPE), ...capFsTypes].filter((f): f is string => !!f))];
  if (fsTypes.length > 1) throw invalidArgument(name, `filesystem types disagree (${fsTypes.join(' vs ')}, from ${PARAM_FS_TYPE} and csi.storage.k8s.io/fstype)`, fix('give one fstype'));
  const fsType = fsTypes[0] ?? 'ext4';
  if (!(FS_TYPES as readonly string[]).includes(fsType)) throw invalidArgument(name, `filesystem type ${JSON.stringify(fsType)} is not supported`, fix(`use one of ${FS_TYPES.join(', ')}`));
  const device = got.get(PARAM_DEVICE) ?? '';
  if (type === 'directvol') {
    if (device) throw invalidArgument(name, `${PARAM_DEVICE} is set for a directvol volume, whose image katavol creates itself`, fix(`remove ${PARAM_DEVICE}`));
  } else if (type === 'spdkvol' && !path.isAbsolute(device.replace(/^(spdk|spool):\/\//, ''))) {
    throw invalidArgument(name, `a spdkvol volume needs ${PARAM_DEVICE}, the absolute path of its vhost-user socket (got ${JSON.stringify(device)})`, fix(`set ${PARAM_DEVICE}, e.g. /var/tmp/spdk/vhost.0`));
  } else if (type === 'vfiovol' && !isPciAddress(device) && !/^\/dev\/vfio\/[0-9]+$/.test(device)) {
    throw invalidArgument(name, `a vfiovol volume needs ${PARAM_DEVICE}, a PCI address or /dev/vfio/N (got ${JSON.stringify(device)})`, fix(`set ${PARAM_DEVICE}, e.g. 0000:3b:00.1`));
  }
  // Stored as the registry stores it (PCI addresses lower case), so publish finds its own entry again.
  const stored = normalizeDevice({ volumeType: type as CsiVolumeType, device, fsType, metadata: {}, options: [] });
  return { volumeType: type as CsiVolumeType, fsType, device: stored };
}

/** The volume_context of a new volume: Kata's keys, so Kata's node plugin would read it too. */
export function volumeContext(name: string, p: VolumeParams, capacity: number): Record<string, string> {
  return {
    [CTX_IS_DIRECT]: 'True',
    [PARAM_VOLUME_TYPE]: p.volumeType,
    [PARAM_FS_TYPE]: p.fsType,
    ...(p.device ? { [PARAM_DEVICE]: p.device } : {}),
    [CTX_NAME]: name,
    [CTX_CAPACITY]: String(capacity),
  };
}
