// The contract between the shim's Create interceptor and a backend (runc host backend, runtime-rs).
import type { MountInfo, OciMount } from '../volumes/types';

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

/** OCI spec as JSON; only the parts backends touch are typed. */
export interface OciSpec {
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  [extra: string]: unknown;
}

export interface Prepared {
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
  prepare(ctx: PrepareContext, spec: OciSpec, volumes: ResolvedVolume[]): Promise<Prepared>;
  release(ctx: PrepareContext): Promise<void>;
  releaseBundle(bundle: string, log: BackendLogger): Promise<void>;
}
