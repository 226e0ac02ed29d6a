// Shared shapes of the volume registry (Kata's mountInfo.json) and the OCI mounts that use it.

/** Kata's volume types (runtime-rs `direct_volumes/mod.rs`). `spoolvol` is accepted as Kata does. */
export type VolumeType = 'directvol' | 'vfiovol' | 'spdkvol' | 'spoolvol';
export const VOLUME_TYPES: readonly VolumeType[] = ['directvol', 'vfiovol', 'spdkvol', 'spoolvol'];

/** mountInfo.json in canonical form (keys `volume-type`, `device`, `fstype`, `metadata`, `options`). */
export interface MountInfo {
  volumeType: VolumeType;
  device: string;
  fsType: string;
  metadata: Record<string, string>;
  options: string[];
}

/** The OCI runtime-spec mount as it appears in a bundle's config.json. */
export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  [extra: string]: unknown;
}

/** OCI spec as JSON; only the parts backends touch are typed. */
export interface OciSpec {
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  [extra: string]: unknown;
}

/** One direct-volume mount of the container, resolved through the registry. */
export interface ResolvedVolume {
  /** Index of the mount in spec.mounts. */
  index: number;
  mount: OciMount;
  volumePath: string;
  /** Directory of the registry entry and its mountInfo.json path (for messages). */
  entryDir: string;
  file: string;
  info: MountInfo;
  /** `ro` in the OCI mount options or in mountInfo options. */
  readOnly: boolean;
}

/** Problem with a volume that a user can fix: names the volume, the file and the fix. */
export class VolumeError extends Error {
  constructor(
    readonly volumePath: string,
    readonly problem: string,
    readonly fix: string,
    readonly file?: string,
    /** The failure underneath (an fs error, a parse error), kept for whoever logs the chain. */
    cause?: unknown,
  ) {
    // No volume (list, the registry root itself): the message starts with the problem.
    super(`${volumePath ? `volume ${JSON.stringify(volumePath)}: ` : ''}${problem}${file ? ` (${file})` : ''}; ${fix}`, cause === undefined ? undefined : { cause });
    this.name = 'VolumeError';
  }
}

/**
 * The text of a thrown value, for a message that wraps it; the value itself travels on as the new
 * error's `cause`. The one place katavol turns an unknown thrown value into text (src/ttrpc, which
 * stands alone, has its own).
 */
export function messageOf(e: unknown): string {
  const message = (e as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : String(e);
}
