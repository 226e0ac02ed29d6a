// A serving daemon's door for its pod's next containers: <socketDir>/.pods/<sandbox id>/, the same
// hand-off as a warm daemon's (handoff.ts). The launcher finds it from the io.kubernetes.cri.sandbox-id
// annotation of the bundle's config.json and hands the start to the pod's own daemon, so a pod's second
// and later containers start with neither a Node start-up nor a warm daemon. The daemon runs the
// downstream start (asynchronously: it keeps proxying meanwhile) exactly as a cold start would; if the
// downstream names another daemon than its pod's after all, start() serves that one the usual way.
import * as fs from 'fs';
import * as path from 'path';
import { spawn, type SpawnSyncReturns } from 'child_process';
import { configPath, type ShimConfig } from './config';
import { buildRoot, claimerAlive, launcherRoot, procStart } from './pool';
import { HandoffChannel, removeHandoffDir, type HandoffRequest } from './handoff';
import { SANDBOX_ID_ANNOTATION } from './interceptor';
import type { Logger } from './logger';
import { failureText } from './args';
import { messageOf } from '../volumes/types';

export const PODS_DIR = '.pods';
const SANDBOX_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export interface PodChannel {
  readonly sandboxId: string;
  close(): void;
}

export function openPodChannel(opts: { cfg: ShimConfig; bundle: string; self: string; log: Logger }): PodChannel | undefined {
  const { cfg, log } = opts;
  if (cfg.warmDaemons <= 0) return undefined; // 0: every start is a cold start, as before warm daemons
  let sandboxId: unknown;
  try {
    sandboxId = (JSON.parse(fs.readFileSync(path.join(opts.bundle, 'config.json'), 'utf8')) as { annotations?: Record<string, unknown> }).annotations?.[SANDBOX_ID_ANNOTATION];
  } catch {
    return undefined;
  }
  if (typeof sandboxId !== 'string' || !SANDBOX_ID.test(sandboxId)) return undefined;
  const parent = path.join(cfg.socketDir, PODS_DIR);
  const dir = path.join(parent, sandboxId);
  const owner = `${process.pid} ${procStart(process.pid)}`;
  try {
    fs.mkdirSync(parent, { recursive: true, mode: 0o700 });
    const [pid, start] = fs.readFileSync(path.join(dir, 'owner'), 'utf8').split(' ');
    if (Number(pid) !== process.pid && procStart(Number(pid)) === start) return undefined; // a live daemon has it
  } catch { /* none yet, or a dead one's: ours to replace */ }

  let ch: HandoffChannel | undefined;
  let closed = false;
  const arm = (): void => {
    if (closed) return;
    try {
      ch = HandoffChannel.open(dir, (r) => void serve(r).finally(arm), { replace: true, owner });
    } catch (e) {
      ch = undefined;
      log.warn('pod start channel unavailable: later containers of the pod start the usual way', { sandbox: sandboxId, error: messageOf(e) });
    }
  };

  const serve = async (r: HandoffRequest): Promise<void> => {
    const c = ch!;
    if (launcherRoot(r.pid, r.launcher) !== buildRoot()) return c.answer('R');
    const env = c.environ(r.pid);
    if (!env || configPath(env) !== cfg.file) return c.answer('R');
    const { parseShimArgs } = await import('./args');
    let args;
    try {
      args = parseShimArgs(r.argv);
    } catch {
      return c.answer('R');
    }
    if (args.action !== 'start') return c.answer('R');
    const got = await c.inputs(r.pid, env);
    if (!got) return c.answer('R');
    const { start } = await import('./start');
    try {
      const started = await start(args, opts.self, false, { ...got, runDownstream });
      c.answer('0', started.answer);
      log.info('pod container started through its daemon', { container: args.id, sandbox: sandboxId });
    } catch (e) {
      c.answer('1', failureText(e));
    }
  };

  arm();
  if (!ch) return undefined;
  return {
    sandboxId,
    close: () => {
      closed = true;
      ch?.remove();
      try { fs.rmdirSync(parent); } catch { /* other pods' channels are in it */ }
    },
  };
}

/** The downstream start without blocking the event loop: containerd's calls keep flowing meanwhile. */
function runDownstream(file: string, argv: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; input: Buffer; stdout: number }): Promise<SpawnSyncReturns<Buffer>> {
  return new Promise((resolve) => {
    const err: Buffer[] = [];
    // stdout goes to the start record (start.ts), which the downstream writes itself.
    const p = spawn(file, argv, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', opts.stdout, 'pipe'] });
    const empty = Buffer.alloc(0);
    p.on('error', (error) => resolve({ pid: 0, output: [], stdout: empty, stderr: empty, status: null, signal: null, error }));
    p.stderr!.on('data', (d: Buffer) => err.push(d));
    p.on('close', (status, signal) => resolve({ pid: p.pid ?? 0, output: [], stdout: empty, stderr: Buffer.concat(err), status, signal }));
    p.stdin!.on('error', () => undefined);
    p.stdin!.end(opts.input);
  });
}

/**
 * Removes the channels of daemons that died (a SIGKILLed daemon cannot), and .pods once empty; one a live
 * launcher claimed stays for it (see sweepPool).
 */
export function sweepPodChannels(socketDir: string): void {
  const parent = path.join(socketDir, PODS_DIR);
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    const dir = path.join(parent, name);
    let owner = '';
    try { owner = fs.readFileSync(path.join(dir, 'owner'), 'utf8'); } catch { /* a half-built one: judged by its name */ }
    const [pid, start] = owner.split(' ');
    // .<name>.<pid>.new: being built by that daemon; .<name>.<pid>.gone: being removed by that process.
    const aside = /^\..*\.(\d+)\.(?:new|gone)$/.exec(name);
    const alive = aside ? procStart(Number(aside[1])) !== undefined : procStart(Number(pid)) === start;
    if (alive || (!aside && claimerAlive(dir))) continue;
    if (aside) fs.rmSync(dir, { recursive: true, force: true });
    else removeHandoffDir(dir);
  }
  try { fs.rmdirSync(parent); } catch { /* live channels in it */ }
}
