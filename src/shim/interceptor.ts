// Create interception: resolve the bundle's direct volumes, let the backend realise them, rewrite
// config.json atomically (the original kept beside it), and undo it all if the downstream Create fails.
import * as fs from 'fs';
import * as path from 'path';
import type { Backend, PrepareContext, PreparedSpec } from '../backends/backend';
import type { OciSpec, ResolvedVolume } from '../volumes/types';
import { Registry } from '../volumes/registry';
import { MountVolumeError, resolveVolumes } from '../volumes/resolver';
import { VolumeError } from '../volumes/types';
import { Code, TtrpcError } from '../ttrpc/errors';
import type { Logger } from './logger';
import { ORIGINAL_SPEC } from './state';
import { UnreadableFileError, readRegularFile, writeFileAtomic } from '../volumes/files';
import { clearHeld, writeHeld, type DaemonHolds } from './held';

export const SANDBOX_ID_ANNOTATION = 'io.kubernetes.cri.sandbox-id';
/**
 * The largest config.json read: containerd's specs are tens of KiB (Kubernetes caps a pod's annotations
 * at 256 KiB), and the daemon's heap is capped (DAEMON_HEAP_FLAG).
 */
const SPEC_MAX_BYTES = 4 << 20;
/** Far deeper than any runtime spec (about 6 levels), far below what JSON.stringify's recursion survives. */
const MAX_SPEC_DEPTH = 512;

/** Whether a parsed JSON object nests deeper than `max` (iterative: the input may be arbitrarily deep). */
function deeperThan(value: object, max: number): boolean {
  const stack: Array<[object, number]> = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (d >= max) return true;
    for (const child of Object.values(v) as unknown[]) if (child !== null && typeof child === 'object') stack.push([child, d + 1]);
  }
  return false;
}

/**
 * Answer for containerd: FAILED_PRECONDITION with a message naming what to fix. The "katavol:" prefix
 * is added here, once: the texts below it (volumes, backends) never carry it.
 */
export class CreateRefused extends TtrpcError {
  constructor(problem: string, options?: ErrorOptions) {
    super(Code.FailedPrecondition, `katavol: ${problem}`, [], options);
    this.name = 'CreateRefused';
  }
}

export interface InterceptedCreate {
  ctx: PrepareContext;
  /** Undo: release the backend and restore the original config.json; `reason` is why (the downstream's error). */
  rollback(reason: string): Promise<void>;
}

export class CreateInterceptor {
  private readonly registry: Registry;
  private backend: Backend | undefined;
  /** Containers whose Create took something, by container id, until their task Delete. */
  private readonly held = new Map<string, PrepareContext>();

  constructor(
    private readonly opts: { volumeRoot: string; volumeRootOrigin?: string; makeBackend: () => Backend; log: Logger; holds?: DaemonHolds },
  ) {
    this.registry = new Registry(opts.volumeRoot);
  }

  /** Returns undefined when the container has no direct volumes (forward untouched). */
  async create(containerId: string, bundle: string): Promise<InterceptedCreate | undefined> {
    const specFile = path.join(bundle, 'config.json');
    const { text, spec } = readSpec(containerId, specFile);
    let volumes: ResolvedVolume[];
    try {
      volumes = resolveVolumes(containerId, spec, this.registry, this.opts.volumeRootOrigin, { typelessBind: () => this.getBackend().typelessBind });
    } catch (e) {
      throw refusal(e);
    }
    if (volumes.length === 0) return undefined;
    // The rewrite serialises the spec again (JSON.stringify recurses): refuse before anything is taken.
    if (deeperThan(spec, MAX_SPEC_DEPTH)) {
      throw new CreateRefused(`container "${containerId}": OCI spec ${specFile} is nested deeper than ${MAX_SPEC_DEPTH} levels; containerd writes specs a few levels deep, so the bundle was changed by something else`);
    }
    const ctx = this.contextFor(containerId, bundle, spec);
    const backend = this.getBackend();
    const prepared = await this.prepare(backend, ctx, spec, volumes);
    const orig = path.join(bundle, ORIGINAL_SPEC);
    await rewriteSpec(backend, ctx, specFile, orig, text, prepared, (b) => this.unhold(b));
    // Stryker disable next-line StringLiteral,ObjectLiteral: the log line's wording and fields; no behaviour depends on them
    ctx.log.info('create intercepted', { backend: backend.name, volumes: prepared.summary });
    this.held.set(containerId, ctx);
    return {
      ctx,
      rollback: async (reason: string) => {
        this.held.delete(containerId);
        await backend.release(ctx);
        this.unhold(bundle);
        restore(specFile, orig);
        // Stryker disable next-line StringLiteral,ObjectLiteral: the log line's wording and fields; no behaviour depends on them
        ctx.log.warn('create rolled back', { reason });
      },
    };
  }

  /** The sandbox is the CRI pod (its annotation), else the container itself. */
  private contextFor(containerId: string, bundle: string, spec: OciSpec): PrepareContext {
    const annotated = spec.annotations?.[SANDBOX_ID_ANNOTATION];
    const sandboxId = typeof annotated === 'string' && annotated ? annotated : containerId;
    // Stryker disable next-line ObjectLiteral: the fields every log line of this Create carries; no behaviour depends on them
    const log = this.opts.log.child({ container: containerId, sandbox: sandboxId });
    return { containerId, bundle, sandboxId, log };
  }

  /** The backend's prepare, under a held record (written first, so a crash mid-way can be undone). */
  private async prepare(backend: Backend, ctx: PrepareContext, spec: OciSpec, volumes: ResolvedVolume[]): Promise<PreparedSpec> {
    const { containerId, bundle, sandboxId } = ctx;
    writeHeld(bundle, { containerId, sandboxId, backend: backend.name, volumeRoot: this.opts.volumeRoot });
    try {
      this.opts.holds?.add(bundle);
    } catch (e) {
      clearHeld(bundle);
      throw new CreateRefused(`container "${containerId}": cannot record its volumes in ${this.opts.holds!.file} (${errorText(e)}); nothing was attached: free space on that file system (socketDir)`, { cause: e });
    }
    try {
      return await backend.prepare(ctx, spec, volumes);
    } catch (e) {
      this.unhold(bundle);
      if (e instanceof VolumeError) {
        // Name the container and mount unless the backend's problem already starts with the mount (runtime-rs's
        // "mount /d: ..."); a destination merely occurring in the text ("/d" in "/dev/loop0") does not name it.
        const v = volumes.find((x) => x.volumePath === e.volumePath);
        if (v && !e.problem.startsWith(`mount ${v.mount.destination}: `)) throw refusal(new MountVolumeError(containerId, v.mount, e));
        throw new CreateRefused(`container "${containerId}": ${e.message}`, { cause: e });
      }
      throw refusal(e);
    }
  }

  /** The task was deleted: release what its Create took. */
  async deleted(containerId: string): Promise<void> {
    const ctx = this.held.get(containerId);
    if (!ctx) return;
    this.held.delete(containerId);
    await this.getBackend().release(ctx);
    this.unhold(ctx.bundle);
    // Stryker disable next-line StringLiteral: the log line's wording; no behaviour depends on it
    ctx.log.info('released volumes on task delete');
  }

  /** Releases everything still held (daemon exit). */
  async releaseAll(): Promise<void> {
    for (const id of [...this.held.keys()]) await this.deleted(id);
  }

  private unhold(bundle: string): void {
    clearHeld(bundle);
    this.opts.holds?.remove(bundle);
  }

  private getBackend(): Backend {
    if (!this.backend) this.backend = this.opts.makeBackend();
    return this.backend;
  }
}

/** config.json as text and as a spec of the shape we can act on; else a refusal saying why. */
function readSpec(containerId: string, specFile: string): { text: string; spec: OciSpec } {
  const changed = 'containerd writes a valid runtime spec here, so the bundle was changed by something else';
  let text: string | undefined;
  let spec: OciSpec;
  try {
    // A FIFO or device in its place must not hang Create, nor a huge file fill the capped heap.
    text = readRegularFile(specFile, { maxBytes: SPEC_MAX_BYTES, follow: true });
    if (text === undefined) throw new CreateRefused(`container "${containerId}": cannot read OCI spec ${specFile}: ENOENT: it does not exist; ${changed}`);
    spec = JSON.parse(text) as OciSpec;
  } catch (e) {
    if (e instanceof CreateRefused) throw e;
    if (e instanceof UnreadableFileError) throw new CreateRefused(`container "${containerId}": cannot read OCI spec: ${e.message}; ${changed}`, { cause: e });
    throw new CreateRefused(`container "${containerId}": cannot read OCI spec ${specFile}: ${errorText(e)}`, { cause: e });
  }
  const shape = !spec || typeof spec !== 'object' || Array.isArray(spec) ? 'is not a JSON object'
    : spec.mounts !== undefined && !Array.isArray(spec.mounts) ? '"mounts" is not a list'
      : spec.annotations !== undefined && (typeof spec.annotations !== 'object' || spec.annotations === null || Array.isArray(spec.annotations)) ? '"annotations" is not an object'
        : '';
  if (shape) {
    throw new CreateRefused(`container "${containerId}": OCI spec ${specFile} ${shape}; ${changed}`);
  }
  return { text, spec };
}

/** Keeps the original beside config.json and writes the backend's spec; undoes the backend on failure. */
async function rewriteSpec(backend: Backend, ctx: PrepareContext, specFile: string, orig: string, text: string, prepared: PreparedSpec, unhold: (bundle: string) => void): Promise<void> {
  try {
    // Stryker disable BooleanLiteral: durable only adds fsyncs (bundle files: see AtomicWriteOptions.durable); no test can observe them
    writeFileAtomic(orig, text, { mode: 0o644, durable: false });
    writeFileAtomic(specFile, JSON.stringify(prepared.spec), { mode: 0o644, durable: false });
    // Stryker restore BooleanLiteral
  } catch (e) {
    await backend.release(ctx);
    unhold(ctx.bundle);
    restore(specFile, orig);
    throw new CreateRefused(`container "${ctx.containerId}": cannot rewrite ${specFile}: ${errorText(e)}`, { cause: e });
  }
}

function restore(specFile: string, orig: string): void {
  try {
    fs.renameSync(orig, specFile);
  } catch { /* nothing was rewritten */ }
}

/** What resolveVolumes or a backend threw, as the answer for containerd (neither throws a CreateRefused). */
function refusal(e: unknown): CreateRefused {
  return new CreateRefused(errorText(e), { cause: e });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
