// Finds the direct-volume mounts of an OCI spec and resolves each through the registry, the way
// runtime-rs detects them: mount type directvol/vfiovol/spdkvol/spoolvol, or a bind mount whose
// source is a registered volume.
import type { OciMount, OciSpec, ResolvedVolume } from './types';
import { VOLUME_TYPES, VolumeError, messageOf } from './types';
import type { Registry } from './registry';
import { superblockMismatch } from './fstype';
import { squash } from './mountinfo';

export const DIRECT_MOUNT_TYPES: ReadonlySet<string> = new Set(VOLUME_TYPES);

/** A volume problem in the context of one container mount (what the Create error reports). */
export class MountVolumeError extends Error {
  constructor(readonly containerId: string, readonly mount: OciMount, readonly reason: unknown) {
    super(`container "${containerId}": mount ${shownDestination(mount)}: ${messageOf(reason)}`, { cause: reason });
    this.name = 'MountVolumeError';
  }
}

/** What a JSON value is, for messages: "an object", "a number", "null". */
function kindOfValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** "/disk" for messages; a destination that is not a string is shown as what it is. */
function shownDestination(m: OciMount): string {
  const d: unknown = m.destination;
  return typeof d === 'string' ? JSON.stringify(d) : `(destination ${d === undefined ? 'missing' : kindOfValue(d)})`;
}

/**
 * A direct-volume mount the backends can act on: a destination string and options as a list of strings
 * (containerd writes both so; a spec edited by hand may not).
 */
function mountShapeProblem(m: OciMount): string | undefined {
  const d: unknown = m.destination;
  if (typeof d !== 'string' || d === '') return 'the mount has no destination (the path in the container, a string such as "/disk")';
  if (d.includes('\0')) return 'the mount destination holds a NUL byte';
  const o: unknown = m.options;
  if (o !== undefined && !(Array.isArray(o) && o.every((x) => typeof x === 'string' && !x.includes('\0')))) {
    return `the mount options must be a list of strings without NUL bytes, found ${Array.isArray(o) ? 'a list holding something else' : kindOfValue(o)}`;
  }
  return undefined;
}

/** The options of a mount; a malformed options field counts as none (what is not a string matches no option name). */
function optionsOf(m: OciMount): readonly unknown[] {
  // Stryker disable next-line ArrayDeclaration: a placeholder element is never "bind", "rbind" or "ro"
  return Array.isArray(m.options) ? m.options : [];
}

/** A bind mount: type "bind", or "none" with bind/rbind; a missing type only when `typeless()` (see Backend.typelessBind). */
function isBind(m: OciMount, typeless: () => boolean): boolean {
  if (m.type === 'bind') return true;
  if (!optionsOf(m).some((o) => o === 'bind' || o === 'rbind')) return false;
  return m.type === 'none' || (!m.type && typeless());
}

/** The types a near miss is pointed to: spoolvol is accepted as Kata does, never suggested. */
const SUGGESTED_TYPES = VOLUME_TYPES.filter((t) => t !== 'spoolvol');

/** Mount types that are near misses of ours (runc would fail on them with "no such device"). */
function nearMissType(type: string): string | undefined {
  const squashed = squash(type);
  const meant = SUGGESTED_TYPES.find((t) => squashed === t || squashed === `${t.slice(0, -3)}volume` || squashed === t.slice(0, -3));
  return meant && meant !== type ? meant : undefined;
}

/** A registered path that differs from `source` only by trailing slashes. */
function slashTwin(registry: Registry, source: string): string | undefined {
  const bare = source.replace(/\/+$/, '');
  // The caller found `source` itself unregistered, and "" never is one: no guard needed for either.
  return [bare, `${bare}/`].find((twin) => safeIsRegistered(registry, twin));
}

/**
 * Returns the resolved volumes (empty when the spec has none); throws MountVolumeError.
 * `rootOrigin` says where the registry root came from ($KATAVOL_VOLUME_ROOT, the config, Kata's default).
 */
export function resolveVolumes(containerId: string, spec: OciSpec, registry: Registry, rootOrigin?: string, opts: { typelessBind?: () => boolean } = {}): ResolvedVolume[] {
  const typeless = opts.typelessBind ?? (() => true);
  const out: ResolvedVolume[] = [];
  // Stryker disable next-line ArrayDeclaration: a placeholder element is not an object, so it is skipped like any non-mount
  const mounts: unknown[] = Array.isArray(spec.mounts) ? spec.mounts : [];
  mounts.forEach((m, index) => {
    // Stryker disable next-line ConditionalExpression: a primitive has no type, source or options: it would fall through as no volume anyway
    if (!m || typeof m !== 'object') return; // not a mount katavol could act on; runc will judge it
    const mount = m as OciMount;
    const source = typeof mount.source === 'string' ? mount.source : '';
    // Stryker disable next-line StringLiteral: a type that is not a string stands for none; no volume type or near miss reads like the placeholder
    const type = typeof mount.type === 'string' ? mount.type : '';
    const meant = nearMissType(type);
    if (meant) {
      throw new MountVolumeError(containerId, mount, new VolumeError(source, `mount type "${mount.type}" is not a direct-volume type (runc would fail with "no such device")`,
        `did you mean type=${meant}? e.g. --mount type=${meant},src=${source || '/kubelet/vol1'},dst=${typeof mount.destination === 'string' && mount.destination ? mount.destination : '/disk'}`));
    }
    const direct = DIRECT_MOUNT_TYPES.has(type);
    if (!direct && !(isBind(mount, typeless) && source && safeIsRegistered(registry, source))) return;
    try {
      if (!source) {
        throw new VolumeError(source, `a ${mount.type} mount needs a source`, 'pass the volume path as src=, e.g. --mount type=directvol,src=/kubelet/vol1,dst=/disk');
      }
      if (!registry.isRegistered(source)) {
        const twin = slashTwin(registry, source);
        if (twin) {
          throw new VolumeError(source, `is not registered, but ${twin} is (volume paths are matched byte for byte)`, `did you mean src=${twin}?`, registry.entryDir(source));
        }
        const where = `in the registry root ${registry.root}${rootOrigin ? ` (from ${rootOrigin})` : ''}`;
        // Stryker disable next-line ConditionalExpression,StringLiteral: a bind reaches here only when its entry is removed between the two lookups (a race no test can time)
        const volumeType = mount.type === 'bind' ? 'directvol' : mount.type;
        throw new VolumeError(source, `is not registered ${where}`, `register it first: katavol direct-volume add ${source} '{"volume-type":"${volumeType}","device":"/path/to/disk.img","fstype":"ext4"}'`, registry.entryDir(source));
      }
      const shape = mountShapeProblem(mount);
      if (shape) throw new VolumeError(source, shape, 'containerd writes a valid mount here (e.g. {"destination":"/disk","type":"directvol","source":"/kubelet/vol1","options":["rbind","rw"]}), so the spec was changed by something else');
      const { info, file, dir } = registry.read(source);
      if (info.volumeType === 'directvol') {
        // Both backends: runc would fail with "no such device", a guest with a mount error naming neither.
        const mismatch = superblockMismatch(info.device, info.fsType);
        if (mismatch) throw new VolumeError(source, mismatch.problem, mismatch.fix, file);
      }
      const readOnly = optionsOf(mount).includes('ro') || info.options.includes('ro');
      out.push({ index, mount, volumePath: source, entryDir: dir, file, info, readOnly });
    } catch (e) {
      throw new MountVolumeError(containerId, mount, e);
    }
  });
  return out;
}

function safeIsRegistered(registry: Registry, source: string): boolean {
  try {
    return registry.isRegistered(source);
  } catch { /* a registry root that cannot be looked into: an ordinary bind mount */ }
  return false;
}
