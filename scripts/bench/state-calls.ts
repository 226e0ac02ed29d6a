// Per-call latency of task State over several paths (straight to a shim, through a katavol daemon), timed
// in interleaved rounds so that every path sees the same load: on a shared machine the load moves one
// path's p50 by tens of microseconds from one second to the next, so figures are per round, and a
// difference between two paths is taken within each round (paired) before its median and range.
import * as fs from 'fs';
import { Client } from '../../src/ttrpc';
import { pidsMatching, type PrivateContainerd } from '../../test/support/containerd';

export interface StatePath {
  label: string;
  socket: string;
  /** The task id to ask State for. */
  id: string;
  /** The serving process, whose CPU time per call is measured when given. */
  pid?: number;
}

/** One path's figures, one entry per measured round. */
export interface RoundFigures {
  p50: number[];
  p99: number[];
  /** Microseconds of the server's CPU time per call (empty without a pid). */
  cpu: number[];
  /** Every latency sample of every round, in microseconds. */
  all: number[];
}

/** Calls dropped at the start of each round (connection set-up, JIT). */
const WARMUP = 100;

export const quantile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * q)];

/** The 1-minute load average, for figures taken on a shared machine. */
export const loadAverage = (): number => Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);

/**
 * Nanoseconds `pid` has spent on a CPU, all threads (schedstat: exact, unlike /proc/<pid>/stat's ticks).
 * A server's CPU time per call moves far less with the machine's load than its latency does.
 */
export function cpuNs(pid: number): number {
  let sum = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      sum += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch { /* the thread ended */ }
  }
  return sum;
}

/** `calls` sequential State calls on a new connection; the latencies after the warm-up, in microseconds. */
async function timeCalls(p: StatePath, calls: number): Promise<number[]> {
  const req = Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(p.id)]), Buffer.from(p.id)]);
  const c = await Client.connect(p.socket.replace('unix://', ''));
  const out: number[] = [];
  try {
    for (let i = 0; i < calls; i++) {
      const t0 = process.hrtime.bigint();
      await c.call('containerd.task.v2.Task', 'State', req);
      out.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
  } finally {
    c.close();
  }
  return out.slice(WARMUP);
}

/**
 * `rounds` measured rounds (after one unmeasured) of `calls` calls per path; the paths take turns going
 * first, so none always follows the same other.
 */
export async function stateRounds(paths: StatePath[], rounds: number, calls: number): Promise<RoundFigures[]> {
  const figs = paths.map((): RoundFigures => ({ p50: [], p99: [], cpu: [], all: [] }));
  for (let round = 0; round <= rounds; round++) {
    for (let k = 0; k < paths.length; k++) {
      const i = (round + k) % paths.length;
      const p = paths[i];
      const c0 = p.pid ? cpuNs(p.pid) : 0;
      const xs = await timeCalls(p, calls);
      if (round === 0) continue;
      if (p.pid) figs[i].cpu.push((cpuNs(p.pid) - c0) / 1e3 / calls);
      figs[i].p50.push(quantile(xs, 0.5));
      figs[i].p99.push(quantile(xs, 0.99));
      figs[i].all.push(...xs);
    }
  }
  return figs;
}

/** op(a[r], b[r]) for each round r; by default the difference. */
export const perRound = (a: number[], b: number[], op: (x: number, y: number) => number = (x, y) => x - y): number[] => a.map((x, r) => op(x, b[r]));

/** The pid of the runc shim serving task `id` of `ctd` (its argv names containerd's socket and the id). */
export function runcShimPid(ctd: PrivateContainerd, id: string): number | undefined {
  return pidsMatching(ctd.sock).find((pid) => {
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      return false; // it exited meanwhile
    }
    return argv[0] === '/usr/bin/containerd-shim-runc-v2' && argv[argv.indexOf('-id') + 1] === id;
  });
}
