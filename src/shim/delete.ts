// `containerd-shim-katavol-v2 ... delete`: containerd runs it after every task delete and after a shim
// died. Forward to the downstream `delete` (its raw DeleteResponse is our answer); when our daemon is
// gone, also stop the orphaned downstream daemon and release what the backend still holds.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import type { ShimArgs } from './args';
import { loadConfig } from './config';
import { daemonPidFile, pidAlive, readPidFile, readState, socketPath } from './state';
import { daemonHoldsFile, heldPending, readDaemonHolds, releaseHeld, releaseInProgress } from './held';
import { canConnect, removeIfDeadSocket } from './sockets';
import { stopDownstream } from './downstream';
import { messageOf } from '../volumes/types';

export interface DeleteResult { stdout: Buffer; stderr: string; status: number }

/** How long a delete waits for another process's release of its bundle: containerd gives `delete` 5 s in all. */
const RELEASE_WAIT_MS = 3000;

export async function del(args: ShimArgs): Promise<DeleteResult> {
  const bundle = args.bundle || process.cwd();
  const state = readState(bundle);
  const downstream = state?.downstream ?? loadConfig().downstream;

  const ds = spawnSync(downstream, args.argv, { cwd: bundle, env: process.env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 20 });
  const result: DeleteResult = {
    stdout: ds.stdout ?? Buffer.alloc(0),
    stderr: ds.error ? `katavol: cannot run downstream ${downstream}: ${ds.error.message}` : (ds.stderr?.toString() ?? ''),
    status: ds.status ?? 1,
  };

  if (state && !pidAlive(state.daemonPid)) {
    // Our daemon is gone. After a normal exit the downstream is gone too (cheap refused connect);
    // after a crash it is orphaned: nobody else will ever tell it to exit.
    const downSock = socketPath(state.downstreamAddress);
    if (await canConnect(downSock)) {
      const did = await stopDownstream(args.id, state.downstreamAddress, { pid: state.downstreamPid, force: true, version: state.bootstrap?.version });
      result.stderr += `katavol: shim daemon ${state.daemonPid} is gone: ${did}\n`; // containerd logs it as a cleanup warning
    }
    else await removeIfDeadSocket(downSock);
    const ours = socketPath(state.address);
    await removeIfDeadSocket(ours);
    const pidFile = daemonPidFile(ours);
    if (!pidAlive(readPidFile(pidFile))) fs.rmSync(pidFile, { force: true });
    // Every container that daemon held volumes for, this pod's app containers included: containerd 2.x
    // runs no `delete` of their own for them.
    if (state.daemonPid) {
      const holds = daemonHoldsFile(ours, state.daemonPid);
      for (const b of readDaemonHolds(holds)) {
        try {
          await releaseHeld(b);
        } catch (e) {
          result.stderr += `katavol: releasing volumes of ${b}: ${messageOf(e)}\n`;
        }
      }
      fs.rmSync(holds, { force: true });
    }
    // The start channel of its pod, if it had opened one (launchers step over a dead one, but leave it).
    (require('./pod-channel') as typeof import('./pod-channel')).sweepPodChannels(path.dirname(ours));
    // Its owner record, and any other daemon or start that died where containerd runs no delete.
    const { sweepDeadDaemons } = await import('./reaper');
    for (const d of await sweepDeadDaemons(path.dirname(ours))) result.stderr += `katavol: ${d}\n`;
  }
  // containerd removes the bundle as soon as we answer, and with it the state a release works from: a
  // release of this bundle that another process (a daemon's reaper, say) is doing must end first. If that
  // process dies meanwhile, its claim is stale and the release below finishes it.
  for (let waited = 0; waited < RELEASE_WAIT_MS && releaseInProgress(bundle); waited += 50) await new Promise((r) => setTimeout(r, 50));
  // Only a crash leaves the held-file (or a killed release's claim of it) behind: the daemon removes it on
  // task Delete. Cheap check first.
  if (heldPending(bundle)) {
    try {
      await releaseHeld(bundle);
    } catch (e) {
      result.stderr += `katavol: releasing volumes of ${bundle}: ${messageOf(e)}\n`;
    }
  }
  return result;
}
