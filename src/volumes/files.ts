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

// Stryker disable next-line BlockStatement: an fsync shows only after a crash or power loss, which no test can cause
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  // Stryker disable next-line BlockStatement: as above (the descriptor's close is checked: test/volumes/files.test.ts counts them)
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` to a new file `file` (must not exist) with `mode` (default 0600) and, if `durable`, fsyncs it. */
// Stryker disable next-line BooleanLiteral: durable only decides whether fsync runs, which shows only after a crash
export function writeNewFileSync(file: string, data: string | Uint8Array, mode = 0o600, durable = true): void {
  const fd = fs.openSync(file, 'wx', mode);
  try {
    fs.writeFileSync(fd, data);
    // Stryker disable next-line ConditionalExpression: an fsync shows only after a crash or power loss, which no test can cause
    if (durable) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface AtomicWriteOptions {
  /** File mode of the new file (before umask); default 0600. */
  mode?: number;
  /** Where the temp file lives (same file system as the target); default the target's directory. */
  tempDir?: string;
  /**
   * The temp file's own path (it must not exist), for a directory whose sweeper removes a killed
   * writer's leftovers by name (the shim's owner records: <file>.<pid>.tmp); default a TEMP_PREFIX name
   * in tempDir.
   */
  tempFile?: string;
  /**
   * fsync the file and its directory (default true). False only for a container's bundle files: they live
   * in containerd's state directory (/run/containerd, tmpfs), mean nothing after a reboot (every shim and
   * container is gone, containerd cleans each bundle up through `delete`), and containerd writes its own
   * there unsynced; the rename still keeps readers from ever seeing a torn file.
   */
  durable?: boolean;
}

/** Atomically replaces `target` with `data`. */
export function writeFileAtomic(target: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  // Stryker disable next-line StringLiteral: the kind only labels the temporary name; every temporary name starts with TEMP_PREFIX
  const tmp = opts.tempFile ?? path.join(opts.tempDir ?? path.dirname(target), tempName('tmp'));
  // Stryker disable next-line LogicalOperator,BooleanLiteral: durable decides only whether fsync runs, which shows only after a crash
  const durable = opts.durable ?? true;
  try {
    writeNewFileSync(tmp, data, opts.mode, durable);
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  // Stryker disable next-line ConditionalExpression: as above
  if (durable) fsyncDir(path.dirname(target));
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

/** What a path is, for error messages ("a directory", "a unix socket", ...). */
export function kindOf(st: fs.Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isSocket()) return 'a unix socket';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'an unusual file';
}

/** A file katavol reads is not a regular file of a sane size; `problem` completes "<file> ...". */
export class UnreadableFileError extends Error {
  constructor(readonly file: string, readonly problem: string) {
    super(`${file} ${problem}`);
    this.name = 'UnreadableFileError';
  }
}

/**
 * Reads a small file that someone other than katavol may have put there (mountInfo.json, a bundle's
 * config.json): a FIFO or device there never blocks the caller (O_NONBLOCK), a final symbolic link is
 * not followed unless `follow`, and the type and size are those of the opened fd, not of the path.
 * Returns undefined when nothing is there; throws UnreadableFileError for what is not a regular file
 * of at most `maxBytes`, and the fs error for anything else (EACCES, EIO, ...).
 */
export function readRegularFile(file: string, opts: { maxBytes: number; follow?: boolean }): string | undefined {
  const { O_RDONLY, O_NONBLOCK, O_NOFOLLOW } = fs.constants;
  let fd: number;
  try {
    fd = fs.openSync(file, O_RDONLY | O_NONBLOCK | (opts.follow ? 0 : O_NOFOLLOW));
  } catch (e) {
    const code = errnoOf(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw new UnreadableFileError(file, opts.follow ? 'is a loop of symbolic links' : 'is a symbolic link; katavol does not follow links here');
    // A unix socket cannot be opened (ENXIO); say what is there.
    const st = code === 'ENXIO' ? lstatOrUndefined(file) : undefined;
    if (st) throw new UnreadableFileError(file, `is ${kindOf(st)}, not a regular file`);
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new UnreadableFileError(file, `is ${kindOf(st)}, not a regular file`);
    if (st.size > opts.maxBytes) throw new UnreadableFileError(file, `is ${st.size} bytes, more than the ${opts.maxBytes} katavol reads from it`);
    // Read to the end (the size may change while reading), never past the cap.
    // Stryker disable next-line MethodExpression: Math.max only makes the buffer larger: the same bytes for a file whose size fstat reports (for a pseudo-file whose size reads 0 it reads on, which katavol never reads)
    const buf = Buffer.alloc(Math.min(opts.maxBytes, st.size) + 1);
    let n = 0;
    // A full buffer asks for 0 more bytes and gets 0: the loop ends there too.
    for (let r; (r = fs.readSync(fd, buf, n, buf.length - n, null)) > 0;) n += r;
    if (n > opts.maxBytes) throw new UnreadableFileError(file, `grew past ${opts.maxBytes} bytes while katavol read it`);
    return buf.subarray(0, n).toString();
  } finally {
    fs.closeSync(fd);
  }
}
