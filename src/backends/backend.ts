// The contract between the shim's Create interceptor and a backend (runc host backend, runtime-rs).
// The volume shapes a backend receives (OciSpec, ResolvedVolume) live one layer down, in src/volumes.
import type { OciSpec, ResolvedVolume } from '../volumes/types';

/**
 * The interceptor's record, in a bundle, that a Create took host resources through a backend
 * (written by src/shim/held.ts, removed once released). Backends read its presence to tell which
 * sibling containers of a pod still hold their volumes.
 */
export const HELD_FILE = 'katavol-held.json';

export interface BackendLogger {
  debug(msg: string, meta?: Record<string, unknown>): void;
  info(msg: string, meta?: Record<string, unknown>): void;
  warn(msg: string, meta?: Record<string, unknown>): void;
  error(msg: string, meta?: Record<string, unknown>): void;
}

export interface PrepareContext {
  containerId: string;
  bundle: string;
  /** Pod sandbox id (annotation io.kubernetes.cri.sandbox-id), else the container id. */
  sandboxId: string;
  log: BackendLogger;
}

export interface PreparedSpec {
  /** The spec to write to config.json before forwarding Create. */
  spec: OciSpec;
  /** What the backend did, for the Create log line. */
  summary: Record<string, unknown>[];
}

/**
 * A backend turns resolved volumes into a rewritten spec. prepare() must be all-or-nothing: when it
 * throws, nothing it took is still held. release() undoes a successful prepare (task Delete, Create
 * rollback); releaseBundle() does the same from state left in the bundle, for a crashed daemon.
 */
export interface Backend {
  readonly name: string;
  prepare(ctx: PrepareContext, spec: OciSpec, volumes: ResolvedVolume[]): Promise<PreparedSpec>;
  release(ctx: PrepareContext): Promise<void>;
  releaseBundle(bundle: string, log: BackendLogger): Promise<void>;
}
