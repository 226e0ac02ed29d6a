// A bundle's record that a Create took host resources through a backend. Written before the backend
// acts, removed after it released everything, so a crashed daemon's `delete` knows what to undo.
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../volumes/files';
import { HELD_FILE } from '../backends/backend';

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

/** Crash path: release through the backend named in the record, from bundle state alone. */
export async function releaseHeld(bundle: string): Promise<void> {
  const held = readHeld(bundle);
  if (!held) return;
  const { createBackend } = await import('../backends');
  const { loadConfig } = await import('./config');
  const backend = createBackend(held.backend, { config: loadConfig(), volumeRoot: held.volumeRoot });
  await backend.releaseBundle(bundle, consoleLogger);
  clearHeld(bundle);
}

// `delete` has no log fifo: problems go to stderr, which containerd logs as cleanup warnings.
const toStderr = (m: string, meta?: Record<string, unknown>): void => void process.stderr.write(`katavol: ${m} ${meta ? JSON.stringify(meta) : ''}\n`);
const consoleLogger = { debug: () => undefined, info: () => undefined, warn: toStderr, error: toStderr };
