// Finds the direct-volume mounts of an OCI spec and resolves each through the registry, the way
// runtime-rs detects them: mount type directvol/vfiovol/spdkvol/spoolvol, or a bind mount whose
// source is a registered volume.
import type { OciMount, OciSpec, ResolvedVolume } from './types';
import { VOLUME_TYPES, VolumeError } from './types';
import type { Registry } from './registry';

export const DIRECT_MOUNT_TYPES: ReadonlySet<string> = new Set(VOLUME_TYPES);

/** A volume problem in the context of one container mount (what the Create error reports). */
export class MountVolumeError extends Error {
  constructor(readonly containerId: string, readonly mount: OciMount, readonly reason: Error) {
    super(`container "${containerId}": mount "${mount.destination}": ${reason.message}`);
    this.name = 'MountVolumeError';
  }
}

/** The options of a mount as strings; a malformed options field counts as none. */
function optionsOf(m: OciMount): string[] {
  return Array.isArray(m.options) ? m.options.filter((o): o is string => typeof o === 'string') : [];
}

function isBind(m: OciMount): boolean {
  if (m.type === 'bind') return true;
  return (!m.type || m.type === 'none') && optionsOf(m).some((o) => o === 'bind' || o === 'rbind');
}

/** Returns the resolved volumes (empty when the spec has none); throws MountVolumeError. */
export function resolveVolumes(containerId: string, spec: OciSpec, registry: Registry): ResolvedVolume[] {
  const out: ResolvedVolume[] = [];
  const mounts: unknown[] = Array.isArray(spec.mounts) ? spec.mounts : [];
  mounts.forEach((m, index) => {
    if (!m || typeof m !== 'object') return; // not a mount katavol could act on; runc will judge it
    const mount = m as OciMount;
    const source = typeof mount.source === 'string' ? mount.source : '';
    const direct = DIRECT_MOUNT_TYPES.has(typeof mount.type === 'string' ? mount.type : '');
    if (!direct && !(isBind(mount) && source && safeIsRegistered(registry, source))) return;
    try {
      if (!source) {
        throw new VolumeError(source, `a ${mount.type} mount needs a source`, 'pass the volume path as src=, e.g. --mount type=directvol,src=/kubelet/vol1,dst=/disk');
      }
      if (!registry.isRegistered(source)) {
        throw new VolumeError(source, 'is not registered', `register it first: katavol direct-volume add ${source} '{"volume-type":"${mount.type === 'bind' ? 'directvol' : mount.type}","device":"/path/to/disk.img","fstype":"ext4"}'`, registry.entryDir(source));
      }
      const { info, file, dir } = registry.read(source);
      const readOnly = optionsOf(mount).includes('ro') || info.options.includes('ro');
      out.push({ index, mount, volumePath: source, entryDir: dir, file, info, readOnly });
    } catch (e) {
      throw new MountVolumeError(containerId, mount, e as Error);
    }
  });
  return out;
}

function safeIsRegistered(registry: Registry, source: string): boolean {
  try {
    return registry.isRegistered(source);
  } catch {
    return false; // e.g. a path too long to be a volume: an ordinary bind mount
  }
}
