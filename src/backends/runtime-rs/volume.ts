// The per-mount input every device builder takes, the entry it produces (one object of the
// io.katacontainers.katavol.devices annotation), and the error helper that names mount and fix.
import * as crypto from 'crypto';
import { VolumeError, type MountInfo, type VolumeType } from '../../volumes/types';
import type { BlockDeviceConfigInfo, HostDeviceConfig } from './dragonball';
import type { GuestView, StorageView } from './guest';

export interface VolumeInput {
  volumePath: string;
  destination: string;
  info: MountInfo;
  /** mountInfo.json of the volume (named in messages). */
  file?: string;
  /** Read-only as the interceptor resolved it (OCI or mountInfo `ro`). */
  readOnly: boolean;
  /** Options of the container's OCI mount as received. */
  ociOptions: readonly string[];
}

/** Where the device sits among the container's devices. */
export interface Placement {
  /** Device index, giving the predicted /dev/vdX. */
  index: number;
  /** Dragonball drive_id (block devices). */
  driveId: string;
}

export interface VfioSpec {
  host_devices: HostDeviceConfig[];
}

export type DeviceSpec = BlockDeviceConfigInfo | VfioSpec;

export interface DeviceEntry<S extends DeviceSpec = DeviceSpec> {
  destination: string;
  volumePath: string;
  volumeType: VolumeType;
  /** Final read-only decision (may be raised by the host, e.g. BLKROGET). */
  readOnly: boolean;
  spec: S;
  guest: GuestView;
  storage: StorageView;
}

export function volumeError(v: Pick<VolumeInput, 'volumePath' | 'destination' | 'file'>, problem: string, fix: string, file?: string, cause?: unknown): VolumeError {
  return new VolumeError(v.volumePath, `mount ${v.destination}: ${problem}`, fix, file ?? v.file, cause);
}

/**
 * Options of the rewritten OCI mount: runtime-rs reads `ro` from the OCI options only, so a
 * read-only volume gets `ro` (and loses a contradicting `rw`); everything else is kept in order.
 */
export function rewrittenOptions(options: readonly string[], readOnly: boolean): string[] {
  if (!readOnly) return [...options];
  const out = options.filter((o) => o !== 'rw');
  if (!out.includes('ro')) out.push('ro');
  return out;
}

/** A stable 16-hex-digit drive id (runtime-rs uses 8 random bytes in the same form). */
export function driveIdFor(deviceKey: string): string {
  return crypto.createHash('sha256').update(deviceKey).digest('hex').slice(0, 16);
}
