// Like containerd's own shims (AdjustOOMScore in its shim package): a shim daemon takes containerd's
// oom_score_adj + 1, so the kernel's OOM killer picks it just after containerd's children would go and
// long before it kills the daemon with its default score (its death ends the pod). Lowering a score
// below the current one needs CAP_SYS_RESOURCE: without it the current score is kept and that is logged.
import * as fs from 'fs';
import type { BackendLogger } from '../backends/backend';
import { errnoOf } from '../volumes/files';
import { messageOf } from '../volumes/types';

/**
 * The daemon's V8 heap cap, the other half of its resource limits (the launcher passes the same flag, and
 * a warm daemon boots with it). Frames cross as opaque buffers outside the heap, with backpressure, so the
 * heap holds only per-connection state; a cap keeps a runaway visible as one daemon's failure instead of
 * memory taken from the pod.
 */
export const DAEMON_HEAP_FLAG = '--max-old-space-size=96';

/**
 * Every Node flag a daemon runs with: the heap cap, and gc() for its collection pacing (gc-pacer.ts). The
 * launcher's inline start passes the same (test/shim/oom.test.ts checks both paths).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = [DAEMON_HEAP_FLAG, '--expose-gc'];

/**
 * containerd's score, read by whoever runs `start` while containerd (its parent) is certainly there: the
 * launcher for the inline daemon, `start` for the daemon it spawns.
 */
export const CONTAINERD_OOM_ENV = 'KATAVOL_CONTAINERD_OOM_SCORE';

/** The score of our parent (containerd, for `start`), as the env value to hand to the daemon. */
export function parentScore(): string {
  try {
    return String(readScore(process.ppid));
  } catch {
    return '';
  }
}

/**
 * The score of `pid`'s parent, as the env value: a warm daemon reads containerd's through the launcher
 * that claimed it (containerd's child, waiting for the answer).
 */
export function parentScoreOf(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return ppid > 0 ? String(readScore(ppid)) : '';
  } catch {
    return '';
  }
}
const OOM_SCORE_MAX = 1000;

const readScore = (pid: number | 'self'): number => Number(fs.readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim());

/** `containerd`: the env value (see CONTAINERD_OOM_ENV). Returns the score this process ends up with. */
export function adjustOomScore(containerd: string | undefined, log: BackendLogger): number | undefined {
  const parent = Number(containerd);
  if (!containerd || !Number.isInteger(parent)) {
    log.debug('containerd\'s oom_score_adj is not known: ours is left as it is');
    return undefined;
  }
  const want = Math.min(OOM_SCORE_MAX, parent + 1);
  const current = readScore('self');
  if (current === want) return current;
  try {
    fs.writeFileSync('/proc/self/oom_score_adj', String(want));
    log.info('oom_score_adj set to containerd\'s + 1, as containerd\'s shims do', { containerd: parent, daemon: want });
    return want;
  } catch (e) {
    log.warn('cannot lower oom_score_adj to containerd\'s + 1 (needs CAP_SYS_RESOURCE); keeping the current score', { containerd: parent, wanted: want, kept: current, error: errnoOf(e) ?? messageOf(e) });
    return current;
  }
}
