// Durable replacement of a file: temp file (0600) + fsync + rename + fsync of the directory, so a
// reader sees the old or the new content, never a torn one, even after a crash.
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

/** Writes `data` to a new file `file` (must not exist) with mode 0600 and fsyncs it. */
export function writeNewFileSync(file: string, data: string): void {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Atomically replaces `target` with `data`; the temp file lives in `tempDir` (same filesystem). */
export function writeFileAtomicSync(target: string, data: string, tempDir = path.dirname(target)): void {
  const tmp = path.join(tempDir, tempName('tmp'));
  try {
    writeNewFileSync(tmp, data);
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(path.dirname(target));
}
