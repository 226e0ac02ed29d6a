// Downstream shims whose katavol daemon died where containerd will not clean up. containerd runs our
// `delete` after a shim it knew died, but not after a `start` that failed (our start was killed after
// the downstream start, before it printed our address), nor when it removed the bundle before that
// `delete` ran: then nothing would ever stop the downstream. So every start keeps records in socketDir:
//   .starts/<pid>.<procstart>.<rand>  while a start runs: a JSON line (container id, bundle, downstream
//       binary), then the downstream start's own stdout, written there by the downstream itself, into
//       space reserved beforehand (so a full disk fails the start before anything runs).
//   <hash>.owner.json  while a daemon serves a downstream: who (pid and start time) and which downstream.
// A record whose process is gone, and whose socket nobody listens on, is reaped: the downstream is
// stopped (found through its socket, never by a recorded pid, which may have been reused), what the
// dead daemon held is released, and its files go. Sweeps run after every start (off its critical path),
// in a crash-path `delete`, and in waiting warm daemons.
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';
import { procStart } from './pool';
import { daemonPidFile, pidAlive, readPidFile, socketPath } from './state';
import { ourAddress } from './sockets';
import { messageOf } from '../volumes/types';
import { writeFileAtomic } from '../volumes/files';

export const STARTS_DIR = '.starts';
/** Reserved for the downstream's answer (an address, or a small JSON or protobuf bootstrap). */
const RESERVE = 4096;
/** Padding after the answer: no bootstrap form ends in 0xFF (text, JSON and a protobuf's last byte are < 0x80). */
const PAD = 0xff;
/** A dead start's record with no answer yet, where it cannot be seen whether its downstream start still has it open: after this, nothing will come. */
const EMPTY_START_TTL_MS = 60_000;

interface StartMeta { id: string; bundle: string; downstream: string }

export interface OwnerRecord {
  /** The container whose start made the daemon (Connect/Shutdown name it). */
  id: string;
  downstreamAddress: string;
  /** The task API version the downstream announced. */
  version: number;
  daemonPid: number;
  daemonStart: string;
}

/** A start in flight: hand `fd` to the downstream start as its stdout, read `output()` once it exited. */
export class StartRecord {
  private constructor(readonly file: string, public fd: number | undefined, private readonly headerLen: number) {}

  /** Throws (ENOSPC, EACCES...) before anything was started; leaves nothing behind then. */
  static open(socketDir: string, meta: StartMeta): StartRecord {
    const dir = path.join(socketDir, STARTS_DIR);
    const file = path.join(dir, `${process.pid}.${procStart(process.pid) ?? 0}.${crypto.randomBytes(4).toString('hex')}`);
    let fd: number | undefined;
    // The last start to finish removes the directory; one starting meanwhile makes it again. Either step
    // can meet ENOENT from that race (Node's recursive mkdir stats what another start just removed).
    for (let i = 0; fd === undefined; i++) {
      try {
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
        fd = fs.openSync(file, 'wx+', 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || i >= 100) throw e;
      }
    }
    try {
      const header = Buffer.from(JSON.stringify(meta) + '\n');
      fs.writeSync(fd, header); // moves the offset: the downstream writes right after it
      fs.writeSync(fd, Buffer.alloc(RESERVE, PAD), 0, RESERVE, header.length); // positional: the offset stays
      return new StartRecord(file, fd, header.length);
    } catch (e) {
      fs.closeSync(fd);
      removeRecord(file);
      throw e;
    }
  }

  /** What the downstream start printed (call after it exited). */
  output(): Buffer {
    this.close();
    return answerOf(fs.readFileSync(this.file).subarray(this.headerLen));
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  remove(): void {
    this.close();
    removeRecord(this.file);
  }
}

/** A start record, and .starts with it once empty. */
function removeRecord(file: string): void {
  fs.rmSync(file, { force: true });
  try { fs.rmdirSync(path.dirname(file)); } catch { /* other starts in flight */ }
}

function answerOf(b: Buffer): Buffer {
  let end = b.length;
  while (end > 0 && b[end - 1] === PAD) end--;
  return b.subarray(0, end);
}

export function ownerFile(sock: string): string {
  return sock.replace(/\.sock$/, '.owner.json');
}

/**
 * Records (atomically: a reader sees a whole record or the previous one) that `pid` serves `sock`. Not
 * fsynced: the record describes live processes, which a reboot ends. The temp file is named for the
 * sweep below, which removes one a killed writer left.
 */
export function writeOwner(sock: string, rec: Omit<OwnerRecord, 'daemonStart'>): void {
  const file = ownerFile(sock);
  const tmpFile = `${file}.${process.pid}.tmp`;
  // One left by an earlier, killed process with our pid is stale: the atomic writer creates its temp file anew.
  fs.rmSync(tmpFile, { force: true });
  writeFileAtomic(file, JSON.stringify({ ...rec, daemonStart: procStart(rec.daemonPid) ?? '' }) + '\n', { tempFile: tmpFile, durable: false });
}

/** Removes the owner record only if it names `pid` (a later daemon of the same socket may have replaced it). */
export function removeOwner(sock: string, pid: number): void {
  const file = ownerFile(sock);
  if (readJson<OwnerRecord>(file)?.daemonPid === pid) fs.rmSync(file, { force: true });
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Unix socket paths something listens on (one read of /proc/net/unix; flag 0x10000 = accepting). */
export function listeningSockets(): Set<string> {
  const out = new Set<string>();
  try {
    for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[7] && (Number.parseInt(f[3], 16) & 0x10000) !== 0) out.add(f[7]);
    }
  } catch { /* no procfs: nothing is judged dead */ }
  return out;
}

const alive = (pid: number | undefined, start: string | undefined): boolean => !!pid && !!start && procStart(pid) === start;

/** Takes a record for this sweeper (atomic rename; a dead sweeper's claim is taken over the same way):
 *  undefined when another sweeper got there first. */
function claim(file: string): string | undefined {
  const claimed = `${file.replace(/\.reaping\.\d+$/, '')}.reaping.${process.pid}`;
  try {
    fs.renameSync(file, claimed);
    return claimed;
  } catch {
    return undefined;
  }
}

/**
 * Reaps the downstreams of dead daemons and dead starts in `socketDir`. Returns one line per reaped
 * record, saying what was done (callers log it). Never throws.
 */
export async function sweepDeadDaemons(socketDir: string): Promise<string[]> {
  const did: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(socketDir);
  } catch {
    return did;
  }
  // A writeOwner killed between its temp file and the rename leaves <hash>.owner.json.<pid>.tmp behind.
  for (const n of names) {
    const tmp = /\.owner\.json\.(\d+)\.tmp$/.exec(n);
    if (tmp && !pidAlive(Number(tmp[1]))) fs.rmSync(path.join(socketDir, n), { force: true });
  }
  const owners = names.filter((n) => /\.owner\.json(\.reaping\.\d+)?$/.test(n));
  let starts: string[] = [];
  try {
    starts = fs.readdirSync(path.join(socketDir, STARTS_DIR)).map((n) => path.join(STARTS_DIR, n));
  } catch { /* none */ }
  if (!owners.length && !starts.length) return did;
  const listening = listeningSockets();
  const { stopDownstream } = await import('./downstream');

  for (const name of owners) {
    try {
      const reaping = /\.reaping\.(\d+)$/.exec(name);
      if (reaping && pidAlive(Number(reaping[1]))) continue; // another sweeper at work
      const file = path.join(socketDir, name);
      const rec = readJson<OwnerRecord>(file);
      const sock = path.join(socketDir, name.replace(/\.owner\.json.*$/, '.sock'));
      if (rec && alive(rec.daemonPid, rec.daemonStart)) continue;
      if (listening.has(sock)) continue; // a daemon serves it (one that had not recorded itself yet)
      const claimed = claim(file);
      if (!claimed) continue;
      if (!rec) {
        fs.rmSync(claimed, { force: true });
        continue;
      }
      const what = [`katavol daemon ${rec.daemonPid} of ${rec.id} is gone`];
      what.push(await stopDownstream(rec.id, rec.downstreamAddress, { force: true, version: rec.version }).catch((e: Error) => e.message));
      const { daemonHoldsFile, readDaemonHolds, releaseHeld } = await import('./held');
      const holds = daemonHoldsFile(sock, rec.daemonPid);
      for (const b of readDaemonHolds(holds)) {
        // The backend's warnings join the line the caller logs (a daemon's stderr goes nowhere).
        const warned = (m: string, meta?: Record<string, unknown>): void => void what.push(`${m} ${meta ? JSON.stringify(meta) : ''}`.trim());
        const log = { debug: () => undefined, info: () => undefined, warn: warned, error: warned };
        await releaseHeld(b, log).then((did) => what.push(did ? `released the volumes of ${b}` : `nothing to release for ${b} (released already, or being released by another process)`),
          (e: Error) => what.push(`releasing the volumes of ${b} failed: ${e.message}`));
      }
      fs.rmSync(holds, { force: true });
      await removeDeadFiles(sock);
      fs.rmSync(claimed, { force: true });
      did.push(what.join('; '));
    } catch (e) {
      did.push(`reaping ${name} failed: ${messageOf(e)}`);
    }
  }

  for (const rel of starts) {
    try {
      const m = /^(\d+)\.(\d+)\.[0-9a-f]+(?:\.reaping\.(\d+))?$/.exec(path.basename(rel));
      if (!m) continue;
      if (m[3] ? pidAlive(Number(m[3])) : alive(Number(m[1]), m[2])) continue;
      const file = path.join(socketDir, rel);
      const text = fs.readFileSync(file);
      const nl = text.indexOf(0x0a);
      const meta = nl > 0 ? readMeta(text.subarray(0, nl)) : undefined;
      const answer = nl > 0 ? answerOf(text.subarray(nl + 1)) : Buffer.alloc(0);
      if (!meta || !answer.length) {
        // The downstream start may still be writing: it holds the record open as its stdout. Once no
        // process does (or, where that cannot be seen, after the TTL), nothing will come.
        const open = openedByAnyProcess(file);
        if (open === false || (open === undefined && Date.now() - fs.statSync(file).mtimeMs > EMPTY_START_TTL_MS)) removeRecord(file);
        continue;
      }
      const { parseBootstrap } = await import('./bootstrap');
      let boot;
      try {
        boot = parseBootstrap(answer, meta.downstream);
      } catch {
        removeRecord(file); // no address: no daemon to stop
        continue;
      }
      const sock = socketPath(ourAddress(socketDir, boot.address));
      const owner = readJson<OwnerRecord>(ownerFile(sock));
      if ((owner && alive(owner.daemonPid, owner.daemonStart)) || listening.has(sock)) {
        removeRecord(file); // the downstream is served (a pod's daemon, or the start got that far)
        continue;
      }
      const claimed = claim(file);
      if (!claimed) continue;
      const what = [`start of ${meta.id} (bundle ${meta.bundle}) died before its daemon served the downstream`];
      what.push(await stopDownstream(meta.id, boot.address, { force: true, version: boot.version }).catch((e: Error) => e.message));
      await removeDeadFiles(sock);
      removeRecord(claimed);
      did.push(what.join('; '));
    } catch (e) {
      did.push(`reaping ${rel} failed: ${messageOf(e)}`);
    }
  }
  if (did.length) (require('./pod-channel') as typeof import('./pod-channel')).sweepPodChannels(socketDir);
  return did;
}

/**
 * Whether some process has the file open, from every /proc/<pid>/fd; undefined when that cannot be seen
 * (no procfs, or processes hidden from us). Costly, so only asked of a dead start's empty record.
 */
function openedByAnyProcess(file: string): boolean | undefined {
  let real: string;
  let pids: string[];
  try {
    real = fs.realpathSync(file);
    pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return undefined;
  }
  let unreadable = false;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') unreadable = true; // hidden from us, not exited
      continue;
    }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === real) return true;
      } catch { /* closed meanwhile */ }
    }
  }
  return unreadable ? undefined : false;
}

function readMeta(b: Buffer): StartMeta | undefined {
  try {
    const m = JSON.parse(b.toString('utf8')) as StartMeta;
    return typeof m.id === 'string' && typeof m.downstream === 'string' ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Our socket, pid file and owner record of a dead daemon (each only if nobody replaced it meanwhile). */
async function removeDeadFiles(sock: string): Promise<void> {
  const { removeIfDeadSocket } = await import('./sockets');
  await removeIfDeadSocket(sock);
  const pidFile = daemonPidFile(sock);
  if (!pidAlive(readPidFile(pidFile))) fs.rmSync(pidFile, { force: true });
  const owner = readJson<OwnerRecord>(ownerFile(sock));
  if (owner && !alive(owner.daemonPid, owner.daemonStart)) fs.rmSync(ownerFile(sock), { force: true });
}
