// The pool of warm daemons under <socketDir>/.warm: who is in it, refilling it, stopping it. The launcher
// (bin/containerd-shim-katavol-v2) claims a daemon with an O_EXCL create of <dir>/claim, so every removal
// here claims first too: whoever holds the claim owns the directory.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn } from 'child_process';
import type { ShimConfig } from './config';
import { removeHandoffDir } from './handoff';
import { DAEMON_NODE_FLAGS } from './oom';

export const POOL_DIR = '.warm';
/** argv[2] of a warm daemon (before any shim flag, so it never collides with containerd's). */
export const WARM_FLAG = '-katavol-warm';
/** Nice value a warm daemon boots and waits at, so a refill never takes CPU from a container start. */
export const WARM_NICE = 10;

export function poolDir(socketDir: string): string {
  return path.join(socketDir, POOL_DIR);
}

/** Root of this build (the directory holding bin/ and dist/), as the launcher computes it. */
export function buildRoot(): string {
  return path.resolve(__dirname, '..', '..', '..');
}

/**
 * The build root of the launcher that sent a hand-off request, from the path it was run by (through
 * symlinks; a relative one is relative to its cwd, where containerd ran it); undefined when unresolvable.
 */
export function launcherRoot(pid: number, launcher: string): string | undefined {
  try {
    const file = path.isAbsolute(launcher) ? launcher : path.resolve(fs.readlinkSync(`/proc/${pid}/cwd`), launcher);
    return path.resolve(fs.realpathSync(file), '..', '..');
  } catch {
    return undefined;
  }
}

/** Changes whenever the daemon's code is rebuilt or reinstalled (tsc rewrites every output file). */
export function buildId(): string {
  try {
    const st = fs.statSync(path.join(__dirname, 'daemon.js'));
    return `${buildRoot()}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return `${buildRoot()}:gone`;
  }
}

/** Start time of a live (not zombie) process in clock ticks since boot, which tells a reused pid apart. */
export function procStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

export interface PoolEntry {
  /**
   * w.<pid>.<start>.<generation>: a waiting daemon's directory; b.<pid>.<start> or .w.<...>.<pid>.new: one
   * booting; .w.<...>.<remover pid>.gone: one being removed (see removeHandoffDir).
   */
  name: string;
  path: string;
  pid: number;
  start: string;
  kind: 'warm' | 'booting' | 'gone';
  /** A launcher (or a stopper) holds it. */
  claimed: boolean;
  /** The daemon lives (for a gone entry: its remover). */
  alive: boolean;
}

export function listPool(socketDir: string): PoolEntry[] {
  const dir = poolDir(socketDir);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: PoolEntry[] = [];
  for (const name of names.sort()) {
    const m = /^(w|b|\.w)\.(\d+)\.(\d+)(?:\.\d+)?(?:\.(\d+)\.(new|gone))?$/.exec(name);
    if (!m) continue;
    const pid = Number(m[2]);
    const p = path.join(dir, name);
    const gone = m[5] === 'gone';
    out.push({
      name, path: p, pid, start: m[3], kind: gone ? 'gone' : m[1] === 'w' ? 'warm' : 'booting',
      claimed: m[1] === 'w' && fs.existsSync(path.join(p, 'claim')),
      alive: gone ? procStart(Number(m[4])) !== undefined : procStart(pid) === m[3],
    });
  }
  return out;
}

/** Takes an entry for ourselves; false when somebody else holds it. */
export function claim(e: PoolEntry): boolean {
  if (e.kind === 'booting') return true;
  try {
    fs.closeSync(fs.openSync(path.join(e.path, 'claim'), 'wx', 0o600));
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes what dead daemons left: their directories and boot markers, and what dead removers left. A
 * dead daemon's directory that a live launcher claimed stays: that launcher saw the EOF and replays the
 * stdin copy in it (its claim file holds its pid).
 */
export function sweepPool(socketDir: string): void {
  for (const e of listPool(socketDir)) {
    if (e.alive || (e.claimed && claimerAlive(e.path))) continue;
    if (e.kind === 'warm') removeHandoffDir(e.path);
    else fs.rmSync(e.path, { recursive: true, force: true });
  }
}

/** The launcher that claimed a hand-off directory (its pid is in the claim file) is still running. */
export function claimerAlive(dir: string): boolean {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'claim'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && procStart(pid) !== undefined;
  } catch {
    return false;
  }
}

function lock(dir: string): (() => void) | undefined {
  const file = path.join(dir, '.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, `${process.pid} ${procStart(process.pid)}\n`);
      fs.closeSync(fd);
      return () => fs.rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
      let holder = '';
      try { holder = fs.readFileSync(file, 'utf8'); } catch { continue; }
      const [pid, start] = holder.trim().split(' ');
      if (pid && procStart(Number(pid)) === start) return undefined; // a live refill is at work
      fs.rmSync(file, { force: true }); // its holder died
    }
  }
  return undefined;
}

/**
 * Boots warm daemons until the pool holds `warmDaemons` (waiting or booting), at low priority, in their
 * own session. Concurrent refills skip while one holds the pool lock; a surplus left by races retires
 * itself (see warm.ts). Returns how many were started.
 */
export function refillPool(cfg: ShimConfig, env: NodeJS.ProcessEnv = process.env): number {
  if (cfg.warmDaemons <= 0) return 0;
  const dir = poolDir(cfg.socketDir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const unlock = lock(dir);
  if (!unlock) return 0;
  try {
    sweepPool(cfg.socketDir);
    const have = new Set(listPool(cfg.socketDir).filter((e) => e.kind !== 'gone' && e.alive && !e.claimed).map((e) => e.pid)).size;
    let started = 0;
    for (let i = have; i < cfg.warmDaemons; i++) {
      // The serving daemon's heap cap (it becomes one); its OOM score: see runWarm.
      const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, path.join(__dirname, 'bin.js'), WARM_FLAG], {
        cwd: '/', detached: true, stdio: 'ignore', env,
      });
      child.on('error', () => undefined);
      if (!child.pid) continue;
      try { os.setPriority(child.pid, WARM_NICE); } catch { /* not permitted: it still works, only sooner */ }
      const start = procStart(child.pid);
      if (start) fs.writeFileSync(path.join(dir, `b.${child.pid}.${start}`), '', { mode: 0o600 });
      child.unref();
      started++;
    }
    return started;
  } finally {
    unlock();
  }
}

/** Stops every warm daemon of the pool (uninstall, tests); serving daemons are left alone. */
export async function stopPool(socketDir: string): Promise<number[]> {
  const stopped: number[] = [];
  for (const e of listPool(socketDir)) {
    if (e.kind === 'gone') continue; // its remover is at it (or sweepPool is, later)
    if (!claim(e)) continue; // being claimed right now: it becomes a serving daemon
    if (e.alive) {
      try { process.kill(e.pid, 'SIGKILL'); stopped.push(e.pid); } catch { /* gone */ }
    }
    if (e.kind === 'warm') removeHandoffDir(e.path);
    else fs.rmSync(e.path, { recursive: true, force: true });
  }
  for (let i = 0; i < 100 && stopped.some((p) => procStart(p) !== undefined); i++) await new Promise((r) => setTimeout(r, 20));
  sweepPool(socketDir); // what dead removers left
  try { fs.rmdirSync(poolDir(socketDir)); } catch { /* not empty (a claim in flight) or absent */ }
  return stopped;
}
