// The runc host backend: realises a directvol volume on the host so the whole chain runs without a VM.
// A raw image file is attached to a loop device and the mount becomes `type=<fstype> source=/dev/loopN`;
// a block device is mounted directly. vfiovol/spdkvol need a VM and are refused (see README).
import * as fs from 'fs';
import * as path from 'path';
import type { Backend, BackendLogger, OciSpec, PrepareContext, Prepared, ResolvedVolume } from './backend';
import type { OciMount } from '../volumes/types';
import { VolumeError } from '../volumes/types';
import type { Registry, SandboxUse } from '../volumes/registry';
import * as loop from './loop';
import { writeFileAtomic } from '../shim/state';
import { refuseHostUse } from '../volumes/in-use';

export const RUNC_STATE_FILE = 'katavol-runc.json';

interface RuncState {
  containerId: string;
  sandboxId: string;
  loops: Array<{ device: string; file: string }>;
  volumes: string[];
}

const DROP_OPTIONS = new Set(['bind', 'rbind', 'ro', 'rw']);

export class RuncBackend implements Backend {
  readonly name = 'runc';
  constructor(private readonly registry: Registry) {}

  async prepare(ctx: PrepareContext, spec: OciSpec, volumes: ResolvedVolume[]): Promise<Prepared> {
    // Host checks for every volume first: a bad one must fail before anything is attached.
    const plans = volumes.map((v) => this.plan(ctx, v));
    const stateFile = path.join(ctx.bundle, RUNC_STATE_FILE);
    const state: RuncState = { containerId: ctx.containerId, sandboxId: ctx.sandboxId, loops: [], volumes: [] };
    const mounts = [...(spec.mounts ?? [])];
    const summary: Record<string, unknown>[] = [];
    try {
      for (const p of plans) {
        let device = p.device;
        if (p.isFile) {
          // Check again and attach under the volume's registry lock: two Creates racing for one
          // read-write image must not both see it free (the loop device is what marks it taken).
          device = this.registry.locked(p.v.volumePath, () => {
            this.plan(ctx, p.v);
            return loop.attach(p.device, p.v.readOnly);
          });
          state.loops.push({ device, file: p.realFile });
          writeFileAtomic(stateFile, JSON.stringify(state), 0o600); // before anything else can fail
        }
        mounts[p.v.index] = rewriteMount(p.v, device);
        summary.push({ destination: p.v.mount.destination, volumePath: p.v.volumePath, device: p.device, source: device, fstype: mounts[p.v.index].type, readOnly: p.v.readOnly });
      }
      // One record per volume: read-write if any of its mounts here is, or if this sandbox
      // already holds it read-write (another of its containers may be writing).
      const readOnlyOf = new Map<string, boolean>();
      for (const p of plans) readOnlyOf.set(p.v.volumePath, (readOnlyOf.get(p.v.volumePath) ?? true) && p.v.readOnly);
      for (const [volumePath, readOnly] of readOnlyOf) {
        const mine = this.registry.sandboxesOf(volumePath).find((s) => s.id === ctx.sandboxId);
        const plan = plans.find((p) => p.v.volumePath === volumePath)!;
        const mode = readOnly && (mine?.readOnly ?? true);
        // Block devices have no loop device to mark them taken: the records are the truth, so check
        // them again under the volume's lock while recording (images were claimed by losetup above).
        this.registry.recordSandboxIf(volumePath, ctx.sandboxId, 'runc', mode,
          (others) => plan.isFile || this.refuseSharedBlockDevice({ ...plan.v, readOnly: mode }, others));
        state.volumes.push(volumePath);
      }
      writeFileAtomic(stateFile, JSON.stringify(state), 0o600);
    } catch (e) {
      await this.releaseState(state, ctx.log, ctx.bundle);
      fs.rmSync(stateFile, { force: true });
      throw e;
    }
    return { spec: { ...spec, mounts }, summary };
  }

  private plan(ctx: PrepareContext, v: ResolvedVolume): { v: ResolvedVolume; device: string; realFile: string; isFile: boolean } {
    const { info } = v;
    if (info.volumeType !== 'directvol') {
      throw new VolumeError(v.volumePath, `volume type "${info.volumeType}" needs a VM: the runc host backend realises only directvol volumes`,
        `run it with the runtime-rs backend (katavol config "backend": "runtime-rs"), or register a raw image or block device as directvol`, v.file);
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(info.device);
    } catch (e) {
      throw new VolumeError(v.volumePath, `device "${info.device}" cannot be used (${(e as NodeJS.ErrnoException).code})`,
        `create the image or block device, or re-register the volume with the right "device"`, v.file);
    }
    if (!st.isFile() && !st.isBlockDevice()) {
      throw new VolumeError(v.volumePath, `device "${info.device}" is neither a regular file nor a block device`,
        `a directvol device must be a raw image file or a block device; re-register the volume with the right "device"`, v.file);
    }
    // Mounts, holders, swap: what the host itself does with the device. Our own containers' mounts
    // of this volume are judged from the sandbox records below, not as host mounts.
    refuseHostUse({ volumePath: v.volumePath, device: info.device, readOnly: v.readOnly, file: v.file },
      { skipLoops: st.isFile(), ownNamespaces: st.isFile() ? undefined : this.containerNamespaces(ctx.bundle, v.volumePath) });
    if (st.isFile()) {
      const holders = loop.loopsOf(info.device);
      const clash = holders.find((h) => !v.readOnly || !h.readOnly);
      if (clash) {
        // Name the holder: the sandbox records of the volume, else the loop device is not ours.
        const users = this.registry.sandboxesOf(v.volumePath).filter((s) => s.id !== ctx.sandboxId);
        const who = users.length ? `by sandbox ${users.map((u) => `${u.id} (${u.backend || 'Kata'}, ${u.readOnly ? 'read-only' : 'read-write'})`).join(', ')}`
          : 'by something with no sandbox record (a container still being created, or a process outside katavol)';
        throw new VolumeError(v.volumePath, `image "${info.device}" is already in use ${who} through ${clash.device} (${clash.readOnly ? 'read-only' : 'read-write'}); a read-write volume can be held by one container at a time`,
          users.length ? 'stop that container, or mount it read-only everywhere (options=rbind:ro)' : `find the user with losetup -j ${info.device}; detach it, or mount the volume read-only everywhere (options=rbind:ro)`, v.file);
      }
    } else {
      this.refuseSharedBlockDevice(v, this.registry.sandboxesOf(v.volumePath).filter((s) => s.id !== ctx.sandboxId));
    }
    return { v, device: info.device, realFile: st.isFile() ? fs.realpathSync(info.device) : '', isFile: st.isFile() };
  }

  /** Mount namespaces of this containerd namespace's containers that hold the volume through us. */
  private containerNamespaces(bundle: string, volumePath: string): Set<string> {
    const out = new Set<string>();
    for (const { dir, state } of bundlesBeside(bundle)) {
      if (!state.volumes.includes(volumePath)) continue;
      try {
        // runc's shim writes the container's init pid into the bundle.
        const pid = Number(fs.readFileSync(path.join(dir, 'init.pid'), 'utf8').trim());
        if (pid > 0) out.add(fs.readlinkSync(`/proc/${pid}/ns/mnt`));
      } catch { /* not started, or exited */ }
    }
    return out;
  }

  /** Like loop devices for images: a writer excludes every other user, readers exclude writers. */
  private refuseSharedBlockDevice(v: ResolvedVolume, others: SandboxUse[]): void {
    const clash = others.filter((u) => u.backend === 'runc' && (!v.readOnly || !u.readOnly));
    if (!clash.length) return;
    const who = clash.map((u) => `${u.id} (${u.readOnly ? 'read-only' : 'read-write'})`).join(', ');
    const stale = clash.map((u) => path.join(this.registry.entryDir(v.volumePath), u.id)).join(' ');
    throw new VolumeError(v.volumePath, v.readOnly
      ? `block device "${v.info.device}" is already used read-write by sandbox ${who}; a read-only mount would see it change underneath`
      : `block device "${v.info.device}" is already used by sandbox ${who}; a read-write volume can be held by one sandbox at a time`,
    `stop that container first, or mount the volume read-only everywhere (options=rbind:ro); if that sandbox no longer exists, remove its stale record: rm ${stale}`, v.file);
  }

  async release(ctx: PrepareContext): Promise<void> {
    await this.releaseBundle(ctx.bundle, ctx.log);
  }

  async releaseBundle(bundle: string, log: BackendLogger): Promise<void> {
    const stateFile = path.join(bundle, RUNC_STATE_FILE);
    let state: RuncState;
    try {
      state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as RuncState;
    } catch {
      return;
    }
    await this.releaseState(state, log, bundle);
    fs.rmSync(stateFile, { force: true });
  }

  /** Volumes held by the sandbox's other containers (their bundles sit next to this one). */
  private siblingHolders(bundle: string, sandboxId: string): Set<string> {
    const out = new Set<string>();
    for (const { state } of bundlesBeside(bundle)) {
      if (state.sandboxId === sandboxId) for (const v of state.volumes) out.add(v);
    }
    return out;
  }

  private async releaseState(state: RuncState, log: BackendLogger, bundle?: string): Promise<void> {
    for (const l of state.loops) {
      try {
        if (loop.detach(l.device, l.file)) log.info('detached loop device', { device: l.device, file: l.file });
      } catch (e) {
        log.warn('detaching loop device failed', { device: l.device, error: (e as Error).message });
      }
    }
    const siblings = bundle ? this.siblingHolders(bundle, state.sandboxId) : new Set<string>();
    for (const v of state.volumes) {
      // Another container of the same pod still holds it: the pod's record stays.
      if (siblings.has(v)) continue;
      try {
        this.registry.releaseSandbox(v, state.sandboxId);
      } catch (e) {
        log.warn('releasing sandbox record failed', { volume: v, error: (e as Error).message });
      }
    }
  }
}

/** Our state in the other bundles of the same containerd namespace (containerd keeps them side by side). */
function bundlesBeside(bundle: string): Array<{ dir: string; state: RuncState }> {
  const parent = path.dirname(bundle);
  let names: string[] = [];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return [];
  }
  const out: Array<{ dir: string; state: RuncState }> = [];
  for (const name of names) {
    const dir = path.join(parent, name);
    if (dir === bundle) continue;
    try {
      out.push({ dir, state: JSON.parse(fs.readFileSync(path.join(dir, RUNC_STATE_FILE), 'utf8')) as RuncState });
    } catch { /* not a bundle of ours */ }
  }
  return out;
}

/** type=<fstype> source=<device>; bind/rbind dropped (a block device is mounted, not bound). */
function rewriteMount(v: ResolvedVolume, device: string): OciMount {
  const extra = [...(v.mount.options ?? []), ...v.info.options].filter((o) => !DROP_OPTIONS.has(o));
  const options = [...new Set(extra), v.readOnly ? 'ro' : 'rw'];
  return { ...v.mount, type: v.info.fsType || 'ext4', source: device, options };
}
