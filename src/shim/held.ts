// A bundle's record that a Create took host resources through a backend. Written before the backend
// acts, removed after it released everything, so a crashed daemon's `delete` knows what to undo.
// The daemon also lists every bundle it holds for in one file of its own (DaemonHolds): containerd 2.x
// runs no `start`/`delete` for a pod's app containers (reference §3.4), so after a crash only the pod's
// `delete` runs, and it must release them all.
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../volumes/files';
import { HELD_FILE, type BackendLogger } from '../backends/backend';
import { pidAlive } from './state';

export interface HeldRecord {
  containerId: string;
  sandboxId: string;
  backend: string;
  volumeRoot: string;
}

export function writeHeld(bundle: string, held: HeldRecord): void {
  writeFileAtomic(path.join(bundle, HELD_FILE), JSON.stringify(held) + '\n');
}

export function readHeld(bundle: string): HeldRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(bundle, HELD_FILE), 'utf8')) as HeldRecord;
  } catch {
    return undefined;
  }
}

export function clearHeld(bundle: string): void {
  fs.rmSync(path.join(bundle, HELD_FILE), { force: true });
}

/**
 * Crash path: release through the backend named in the record, from bundle state alone. The record is
 * claimed first by an atomic rename, so the concurrent deletes containerd runs for a pod's containers
 * never release one bundle twice; on failure it is put back for a later delete to retry. True when this
 * call released it; false when nothing was held or another live process is releasing it. The backend's
 * warnings go to `log` (by default stderr, which containerd logs for a `delete`).
 */
export async function releaseHeld(bundle: string, log: BackendLogger = consoleLogger): Promise<boolean> {
  const file = path.join(bundle, HELD_FILE);
  const claimed = `${file}.releasing.${process.pid}`;
  // Loaded before the claim, so that from the claim until the backend has read its state from the bundle
  // nothing awaits: once it holds the state, containerd removing the bundle cannot stop the release.
  const { createBackend } = await import('../backends');
  const { loadConfig } = await import('./config');
  try {
    fs.renameSync(file, claimed);
  } catch {
    // Nothing held, or another delete is releasing it; or one that was killed mid-way left its claim:
    // that one is ours to finish (containerd removes the bundle after this delete, and the record with it).
    const stale = staleClaim(bundle);
    if (!stale) return false;
    try {
      fs.renameSync(stale, claimed);
    } catch {
      return false; // another delete took it over first
    }
  }
  let held: HeldRecord;
  try {
    held = JSON.parse(fs.readFileSync(claimed, 'utf8')) as HeldRecord;
  } catch {
    fs.rmSync(claimed, { force: true }); // torn by a crash mid-write: the backend had not acted yet
    return false;
  }
  try {
    const backend = createBackend(held.backend, { config: loadConfig(), volumeRoot: held.volumeRoot });
    await backend.releaseBundle(bundle, log);
  } catch (e) {
    try { fs.renameSync(claimed, file); } catch { /* bundle gone */ }
    throw e;
  }
  fs.rmSync(claimed, { force: true });
  return true;
}

const CLAIM_NAME = new RegExp(`^${HELD_FILE.replace(/\./g, '\\.')}\\.releasing\\.(\\d+)$`);

/** Claims of the bundle's held record (HELD_FILE.releasing.<pid>), with the releaser's pid. */
function claimsOf(bundle: string): Array<{ file: string; pid: number }> {
  let names: string[];
  try {
    names = fs.readdirSync(bundle);
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    const m = CLAIM_NAME.exec(n);
    return m ? [{ file: path.join(bundle, n), pid: Number(m[1]) }] : [];
  });
}

/** A claim whose releaser died before finishing. */
function staleClaim(bundle: string): string | undefined {
  return claimsOf(bundle).find((c) => !pidAlive(c.pid))?.file;
}

/** Something is held for the bundle, or a release of it was left unfinished by a killed releaser. */
export function heldPending(bundle: string): boolean {
  return fs.existsSync(path.join(bundle, HELD_FILE)) || staleClaim(bundle) !== undefined;
}

/** Another live process (a daemon's reaper, a concurrent delete) is releasing the bundle right now. */
export function releaseInProgress(bundle: string): boolean {
  return claimsOf(bundle).some((c) => c.pid !== process.pid && pidAlive(c.pid));
}

/** Where a daemon lists the bundles it holds for: next to its socket, named by its pid. */
export function daemonHoldsFile(sock: string, pid: number): string {
  return sock.replace(/\.sock$/, `.${pid}.holds.json`);
}

export function readDaemonHolds(file: string): string[] {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    return Array.isArray(v) ? v.filter((b): b is string => typeof b === 'string') : [];
  } catch {
    return [];
  }
}

/** The daemon's list of bundles whose Create took something; the file exists only while non-empty. */
export class DaemonHolds {
  private readonly bundles = new Set<string>();
  constructor(readonly file: string) {}

  add(bundle: string): void {
    this.bundles.add(bundle);
    this.save();
  }

  /** Never fails a release: a list left longer than needed only names bundles with nothing left to release. */
  remove(bundle: string): void {
    if (!this.bundles.delete(bundle)) return;
    try {
      this.save();
    } catch { /* e.g. ENOSPC: the next save, or the daemon's exit, writes it */ }
  }

  private save(): void {
    if (this.bundles.size === 0) fs.rmSync(this.file, { force: true });
    else writeFileAtomic(this.file, JSON.stringify([...this.bundles]) + '\n');
  }
}

// `delete` has no log fifo: problems go to stderr, which containerd logs as cleanup warnings.
const toStderr = (m: string, meta?: Record<string, unknown>): void => void process.stderr.write(`katavol: ${m} ${meta ? JSON.stringify(meta) : ''}\n`);
const consoleLogger = { debug: () => undefined, info: () => undefined, warn: toStderr, error: toStderr };
