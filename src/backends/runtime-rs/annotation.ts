// The io.katacontainers.katavol.devices annotation: how it is written, and read back from a bundle
// (for release after a restart, and to see which sibling containers still use a volume).
import * as fs from 'fs';
import * as path from 'path';
import type { OciSpec } from '../../volumes/types';
import { HELD_FILE } from '../backend';
import type { DeviceEntry } from './volume';

export const DEVICES_ANNOTATION = 'io.katacontainers.katavol.devices';
/** The CRI sandbox id annotation (PrepareContext.sandboxId comes from it, else the container id). */
export const CRI_SANDBOX_ANNOTATION = 'io.kubernetes.cri.sandbox-id';

export function encodeDevices(entries: readonly DeviceEntry[]): string {
  return JSON.stringify(entries);
}

/** Volume paths named by a devices annotation; [] when absent. Throws on a malformed value. */
export function volumePathsOf(spec: OciSpec): string[] {
  const raw = spec.annotations?.[DEVICES_ANNOTATION];
  if (raw === undefined) return [];
  const parsed: unknown = JSON.parse(raw);
  if (!Array.isArray(parsed)) throw new Error(`${DEVICES_ANNOTATION} is not a JSON array`);
  const out: string[] = [];
  for (const e of parsed) {
    const v = (e as { volumePath?: unknown } | null)?.volumePath;
    if (typeof v !== 'string') throw new Error(`${DEVICES_ANNOTATION} has an entry without a volumePath`);
    if (!out.includes(v)) out.push(v);
  }
  return out;
}

/** containerd names the bundle directory after the container id. */
export function sandboxIdOf(spec: OciSpec, bundle: string): string {
  return spec.annotations?.[CRI_SANDBOX_ANNOTATION] || path.basename(bundle);
}

export function readBundleSpec(bundle: string): OciSpec {
  return JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')) as OciSpec;
}

/**
 * Whether another bundle next to this one (containerd keeps one directory per container of a
 * namespace) belongs to the same sandbox, still holds its volumes (the interceptor's held record,
 * removed once released) and lists the volume.
 */
export function siblingUses(bundle: string, sandboxId: string, volumePath: string): boolean {
  const parent = path.dirname(path.resolve(bundle));
  const self = path.basename(path.resolve(bundle));
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return false;
  }
  for (const name of names) {
    if (name === self) continue;
    const dir = path.join(parent, name);
    if (!fs.existsSync(path.join(dir, HELD_FILE))) continue;
    try {
      const spec = readBundleSpec(dir);
      if (sandboxIdOf(spec, dir) === sandboxId && volumePathsOf(spec).includes(volumePath)) return true;
    } catch {
      // not a bundle of ours, or being written: not a user
    }
  }
  return false;
}
