// The parts of CSI messages the services read, as @grpc/proto-loader decodes them (keepCase, int64 as
// strings, enums as names, defaults filled in), and the checks every service applies to them.
import { invalidArgument, outOfRange } from './errors';
import { SECTOR } from './image';

export interface CapacityRange {
  required_bytes: string;
  limit_bytes: string;
}

export interface VolumeCapability {
  mount?: { fs_type: string; mount_flags: string[]; volume_mount_group: string } | null;
  block?: object | null;
  access_type?: 'mount' | 'block';
  access_mode?: { mode: string } | null;
}

/** Access modes of a volume that lives on one node; the multi-node ones cannot be honoured. */
const NODE_LOCAL_MODES = ['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER'];

/** Why a capability cannot be served, or undefined when it can. */
export function capabilityProblem(cap: VolumeCapability | null | undefined): string | undefined {
  if (!cap) return 'volume_capability is missing';
  if (cap.block || cap.access_type === 'block') return 'raw block access (volumeMode: Block) is not supported; katavol hands the guest a filesystem volume';
  if (!cap.mount) return 'volume_capability has no access type (mount)';
  const mode = cap.access_mode?.mode ?? 'UNKNOWN';
  if (!NODE_LOCAL_MODES.includes(mode)) return `access mode ${mode} is not supported: a katavol volume lives on one node (use ReadWriteOnce or ReadWriteOncePod)`;
  return undefined;
}

export function requireCapabilities(volumeId: string, caps: VolumeCapability[] | null | undefined): void {
  if (!caps || caps.length === 0) throw invalidArgument(volumeId, 'volume_capabilities is missing', 'send at least one volume capability');
  for (const c of caps) {
    const p = capabilityProblem(c);
    if (p) throw invalidArgument(volumeId, p, 'use a filesystem volume with a single-node access mode');
  }
}

export function requireId(volumeId: string, what = 'volume_id'): string {
  if (!volumeId) throw invalidArgument('', `${what} is missing`, `send the ${what} CreateVolume returned`);
  return volumeId;
}

/** An int64 field (decoded as a decimal string) as a safe integer, or undefined when it is out of range. */
function bytesOf(text: string | undefined): bigint {
  return BigInt(text || '0');
}

/**
 * The size to give a volume: required_bytes (else limit_bytes) rounded up to a whole sector, within
 * limit_bytes and [min, max]. Sizes are never rounded down (Kata's driver rounds down to MiB).
 */
export function sizeFor(volumeId: string, range: CapacityRange | null | undefined, min: number, max: number): number {
  const required = bytesOf(range?.required_bytes);
  const limit = bytesOf(range?.limit_bytes);
  const fix = `request between ${min} and ${max} bytes (the PVC's resources.requests.storage; the maximum is --max-volume-size)`;
  if (required < 0n || limit < 0n) throw outOfRange(volumeId, `capacity_range is negative (required ${required}, limit ${limit})`, fix);
  const asked = required > 0n ? required : limit;
  if (asked === 0n) throw outOfRange(volumeId, 'capacity_range asks for 0 bytes (no size given)', fix);
  const size = ((asked + BigInt(SECTOR) - 1n) / BigInt(SECTOR)) * BigInt(SECTOR);
  if (limit > 0n && size > limit) throw outOfRange(volumeId, `capacity_range limit ${limit} is below the ${size} bytes required (rounded up to a ${SECTOR}-byte sector)`, fix);
  if (size > BigInt(max)) throw outOfRange(volumeId, `${asked} bytes is more than this plugin's maximum volume size of ${max} bytes`, fix);
  if (size < BigInt(min)) throw outOfRange(volumeId, `${asked} bytes is less than the minimum volume size of ${min} bytes`, fix);
  return Number(size);
}
