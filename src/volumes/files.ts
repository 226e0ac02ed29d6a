// Small file-system utilities every layer uses, each written once. The one atomic writer of katavol
// (registry entries, bundle files, the shim config written by install-runtime): temp file + fsync +
// rename + fsync of the directory, so a reader sees the old or the new content, never a torn one,
// even after a crash.
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';

/** Prefix of every temporary name katavol creates in the registry root (never a base64 name). */
export const TEMP_PREFIX = '.katavol-';

export function tempName(kind: string): string {
  return `${TEMP_PREFIX}${kind}-${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` to a new file `file` (must not exist) with `mode` (default 0600) and fsyncs it. */
export function writeNewFileSync(file: string, data: string | Uint8Array, mode = 0o600): void {
  const fd = fs.openSync(file, 'wx', mode);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface AtomicWriteOptions {
  /** File mode of the new file (before umask); default 0600. */
  mode?: number;
  /** Where the temp file lives (same file system as the target); default the target's directory. */
  tempDir?: string;
}

/** Atomically replaces `target` with `data`. */
export function writeFileAtomic(target: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const tmp = path.join(opts.tempDir ?? path.dirname(target), tempName('tmp'));
  try {
    writeNewFileSync(tmp, data, opts.mode);
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(path.dirname(target));
}

/** The errno code of a failed fs call (ENOENT, EACCES, ...), if it has one. */
export function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

/** lstat, or undefined when nothing is there (ENOENT, or a path component that is not a directory). */
export function lstatOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return undefined;
    throw e;
  }
}
