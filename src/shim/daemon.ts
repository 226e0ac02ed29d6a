// The long-running shim process: accepts containerd's connections on the socket `start` bound (in this
// same process after an inline start, else inherited as fd 3), pairs each with its own downstream
// connection, and exits only when the downstream shim has gone and no containerd connection remains
// (so it survives containerd restarts). A daemon nobody will ever use again exits too (see watchOrphan).
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import type { ShimArgs } from './args';
import { loadConfig } from './config';
import { daemonPidFile, readState, socketPath } from './state';
import { createLogger } from './logger';
import { CreateInterceptor } from './interceptor';
import { ProxyConnection } from './proxy';
import { GcPacer } from './gc-pacer';
import { canConnect, removeIfDeadSocket } from './sockets';
import { volumeRootInEffect } from '../volumes/registry';
import { messageOf } from '../volumes/types';
import { createBackend } from '../backends';
import { DaemonHolds, daemonHoldsFile } from './held';
import { CONTAINERD_OOM_ENV, adjustOomScore } from './oom';
import { removeOwner, sweepDeadDaemons } from './reaper';

export const ORPHAN_TIMEOUT_ENV = 'KATAVOL_ORPHAN_TIMEOUT_MS';
const DEFAULT_ORPHAN_TIMEOUT_MS = 30000;

/** Ids of the bundles beside ours (a pod's containers share us) that name our address. */
function bundlesServed(bundle: string, address: string): string[] {
  const parent = path.dirname(path.resolve(bundle));
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return [];
  }
  return names.filter((n) => {
    try {
      return fs.readFileSync(path.join(parent, n, 'address'), 'utf8').trim() === address;
    } catch {
      return false;
    }
  });
}

/**
 * True only when the downstream answers State with NotFound for every id (any doubt: false). Asked in
 * the task API version the downstream announced (a containerd 2.x runc shim serves only v3).
 */
async function downstreamKnowsNone(downSock: string, version: number | undefined, ids: string[]): Promise<boolean> {
  const { Client, Code } = await import('../ttrpc');
  const { encodeStateRequest } = await import('./messages');
  const { callTask } = await import('./downstream');
  let c;
  try {
    c = await Client.connect(downSock);
  } catch {
    return false; // gone: the normal exit path sees it
  }
  try {
    for (const id of ids) {
      try {
        await callTask(c, version, 'State', encodeStateRequest(id));
        return false;
      } catch (e) {
        if ((e as { code?: number }).code !== Code.NotFound) return false;
      }
    }
    return true;
  } finally {
    c.close();
  }
}

/**
 * `bound`: a socket already bound by an inline start in this process (else fd 3 or our path). `pool`: this
 * process was a warm daemon, and how long each step of its start took (logged).
 */
export async function runDaemon(args: ShimArgs, bound?: { server: net.Server; early: net.Socket[] }, pool?: { startStepsMs: Record<string, number> }): Promise<void> {
  const entered = process.hrtime.bigint();
  const bundle = args.bundle || process.cwd();
  const state = readState(bundle);
  if (!state) throw new Error(`no katavol.json in ${bundle}: the daemon serves only a bundle our start has prepared`);
  const cfg = loadConfig();
  const log = createLogger({
    file: `${bundle}/log`, level: args.debug ? 'debug' : (cfg.logLevel ?? 'info'), format: cfg.logFormat,
    // The fields containerd's own shims log with (runtime: our name, as a Go shim logs its own).
    meta: { namespace: args.namespace, id: args.id, runtime: 'io.containerd.katavol.v2' }, loadAfterIdleMs: 300,
  });
  const root = volumeRootInEffect(process.env, { root: cfg.volumeRoot, file: cfg.file });
  const volumeRoot = root.root;
  const ourSock = socketPath(state.address);
  const interceptor = new CreateInterceptor({
    volumeRoot, log, volumeRootOrigin: root.origin,
    makeBackend: () => createBackend(cfg.backend, { config: cfg, volumeRoot }),
    holds: new DaemonHolds(daemonHoldsFile(ourSock, process.pid)),
  });
  const downSock = socketPath(state.downstreamAddress);
  const conns = new Set<ProxyConnection>();
  let exiting = false;
  let everConnected = bound ? bound.early.length > 0 : false;

  // Nothing containerd, the downstream or a user file sends may take the shim down.
  process.on('uncaughtException', (err) => log.error('uncaught exception (kept running)', { error: err.stack ?? String(err) }));
  process.on('unhandledRejection', (err) => log.error('unhandled rejection (kept running)', { error: String(err) }));
  process.on('SIGPIPE', () => undefined);

  const pacer = new GcPacer();
  const serve = (socket: net.Socket): void => {
    const p = new ProxyConnection(socket, downSock, { interceptor, log, pacer, onClosed: (c, sawShutdown) => {
      conns.delete(c);
      log.debug('containerd connection closed', { connections: conns.size, afterShutdown: sawShutdown });
      void maybeExit(sawShutdown);
    } });
    conns.add(p);
    everConnected = true;
    log.debug('containerd connected', { connections: conns.size });
  };
  let server: net.Server;
  if (bound) {
    server = bound.server;
    server.removeAllListeners('connection');
    server.on('connection', serve);
    for (const s of bound.early.splice(0)) serve(s);
  } else {
    server = net.createServer(serve);
    const fd = process.env.KATAVOL_LISTEN_FD ? Number(process.env.KATAVOL_LISTEN_FD) : undefined;
    await new Promise<void>((resolve) => (fd !== undefined ? server.listen({ fd }, resolve) : server.listen(ourSock, resolve)));
  }
  server.on('error', (err) => log.error('listener error', { error: err.message }));
  adjustOomScore(process.env[CONTAINERD_OOM_ENV], log);
  const pidFile = daemonPidFile(ourSock);
  fs.writeFileSync(pidFile, `${process.pid}\n`);
  if (pool) pool.startStepsMs.daemon = Math.round(Number(process.hrtime.bigint() - entered) / 1e4) / 100; // answer to serving
  log.info('katavol shim daemon serving', { address: state.address, downstream: state.downstreamAddress, backend: cfg.backend, fromPool: pool !== undefined, ...(pool ? { startStepsMs: pool.startStepsMs } : { startupMs: Math.round(process.uptime() * 1000) }) });

  // Later containers of the pod may hand their start to us directly (no Node start-up, no warm daemon).
  let podChannel: import('./pod-channel').PodChannel | undefined;
  setImmediate(() => {
    if (exiting) return;
    try {
      podChannel = (require('./pod-channel') as typeof import('./pod-channel')).openPodChannel({ cfg, bundle, self: process.argv[1], log });
    } catch (e) {
      log.warn('pod start channel not opened', { error: String(e) });
    }
  });

  watchOrphan();

  // Downstreams of daemons and starts that died where containerd will not clean up (reaper.ts): looked
  // for once per start, now that containerd has its answer.
  setTimeout(() => {
    if (exiting) return;
    void sweepDeadDaemons(path.dirname(ourSock)).then((did) => { for (const d of did) log.warn('reaped the downstream of a dead katavol daemon', { what: d }); });
  }, 100).unref();

  /**
   * A daemon containerd will never use again must not run forever with its downstream (containerd's own
   * runc shim leaks this way, containerd#6860): containerd stopped while our `start` was in flight never
   * connects; one restarted while a task was being created reconnects (Connect only) to a shim that has
   * no task and never uses it; after a restart it may remove the bundle without telling us. So exit when
   * containerd has not connected within KATAVOL_ORPHAN_TIMEOUT_MS (default 30 s) of start, when no bundle
   * names our address any more while no connection remains, or when, that long after start, the
   * downstream knows none of the tasks whose bundles name us (State answers NotFound for each: checked
   * once per timeout). A containerd that is down changes none of these, so a restart abandons nothing.
   */
  function watchOrphan(): void {
    const limit = Number(process.env[ORPHAN_TIMEOUT_ENV]) > 0 ? Number(process.env[ORPHAN_TIMEOUT_ENV]) : DEFAULT_ORPHAN_TIMEOUT_MS;
    const since = Date.now();
    let lastTaskCheck = since;
    let busy = false;
    const timer = setInterval(() => {
      if (busy || exiting) return;
      const stop = (reason: string): void => {
        clearInterval(timer);
        void orphaned(reason);
      };
      if (!everConnected && Date.now() - since >= limit) {
        return stop(`containerd never connected within ${limit} ms of start (it was probably stopped while the start was in flight)`);
      }
      const ids = bundlesServed(bundle, state!.address);
      if (conns.size === 0 && ids.length === 0) {
        return stop(`containerd removed the bundle (${bundle}) of every task of this daemon and no connection remains`);
      }
      if (Date.now() - lastTaskCheck < limit || ids.length === 0) return;
      lastTaskCheck = Date.now();
      busy = true;
      void downstreamKnowsNone(downSock, state!.bootstrap?.version, ids).then((none) => {
        busy = false;
        if (none && !exiting) stop(`the downstream shim has none of the tasks ${ids.join(', ')} ${limit} ms after start (containerd was restarted while creating it and no longer uses this shim)`);
      });
    }, Math.min(1000, limit));
    timer.unref();
  }

  async function orphaned(reason: string): Promise<void> {
    log.warn('katavol shim daemon is orphaned: stopping its downstream shim and exiting', { reason });
    const { stopDownstream } = await import('./downstream');
    const did = await stopDownstream(args.id, state!.downstreamAddress, { pid: state!.downstreamPid, force: true, version: state!.bootstrap?.version }).catch((e: unknown) => messageOf(e));
    log.info('downstream shim stopped', { result: did });
    const { releaseHeld } = await import('./held');
    await releaseHeld(bundle, log).catch((e: unknown) => log.error('releasing the bundle\'s volumes failed', { error: messageOf(e) }));
    await exit(reason, true);
  }

  async function maybeExit(afterShutdown: boolean): Promise<void> {
    if (exiting || conns.size > 0) return;
    // The downstream exits after its last Shutdown; give it a moment, then see if it still answers.
    for (let i = 0; i < (afterShutdown ? 40 : 1); i++) {
      if (!(await canConnect(downSock, 500))) return exit('downstream shim has exited');
      if (conns.size > 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** `force`: an orphan closes the connections containerd keeps but will never use. */
  async function exit(reason: string, force = false): Promise<void> {
    if (exiting || (conns.size > 0 && !force)) return;
    exiting = true;
    for (const c of [...conns]) c.close();
    log.info('katavol shim daemon exiting', { reason });
    podChannel?.close();
    server.close();
    await interceptor.releaseAll().catch((e) => log.error('release on exit failed', { error: String(e) }));
    fs.rmSync(ourSock, { force: true });
    fs.rmSync(pidFile, { force: true });
    removeOwner(ourSock, process.pid);
    // The runc shim removes the socket named in ./address (ours) and leaves its own behind.
    await removeIfDeadSocket(downSock);
    await log.close();
    process.exit(0);
  }
}
