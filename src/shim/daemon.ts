// The long-running shim process: accepts containerd's connections on the socket `start` bound (in this
// same process after an inline start, else inherited as fd 3), pairs each with its own downstream
// connection, and exits only when the downstream shim has gone and no containerd connection remains
// (so it survives containerd restarts).
import * as fs from 'fs';
import * as net from 'net';
import type { ShimArgs } from './args';
import { loadConfig } from './config';
import { daemonPidFile, readState, socketPath } from './state';
import { createLogger } from './logger';
import { CreateInterceptor } from './interceptor';
import { ProxyConnection } from './proxy';
import { canConnect, removeIfDeadSocket } from './sockets';
import { volumeRootInEffect } from '../volumes/registry';
import { createBackend } from '../backends';
import { DaemonHolds, daemonHoldsFile } from './held';

/** `bound`: a socket already bound by an inline start in this process (else fd 3 or our path). */
export async function runDaemon(args: ShimArgs, bound?: { server: net.Server; early: net.Socket[] }, fromPool = false): Promise<void> {
  const bundle = args.bundle || process.cwd();
  const state = readState(bundle);
  if (!state) throw new Error(`katavol daemon: no katavol.json in ${bundle}`);
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

  // Nothing containerd, the downstream or a user file sends may take the shim down.
  process.on('uncaughtException', (err) => log.error('uncaught exception (kept running)', { error: err.stack ?? String(err) }));
  process.on('unhandledRejection', (err) => log.error('unhandled rejection (kept running)', { error: String(err) }));
  process.on('SIGPIPE', () => undefined);

  const serve = (socket: net.Socket): void => {
    const p = new ProxyConnection(socket, downSock, { interceptor, log, onClosed: (c, sawShutdown) => {
      conns.delete(c);
      log.debug('containerd connection closed', { connections: conns.size, afterShutdown: sawShutdown });
      void maybeExit(sawShutdown);
    } });
    conns.add(p);
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
  const pidFile = daemonPidFile(ourSock);
  fs.writeFileSync(pidFile, `${process.pid}\n`);
  log.info('katavol shim daemon serving', { address: state.address, downstream: state.downstreamAddress, backend: cfg.backend, fromPool, startupMs: Math.round(process.uptime() * 1000) });

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

  async function maybeExit(afterShutdown: boolean): Promise<void> {
    if (exiting || conns.size > 0) return;
    // The downstream exits after its last Shutdown; give it a moment, then see if it still answers.
    for (let i = 0; i < (afterShutdown ? 40 : 1); i++) {
      if (!(await canConnect(downSock, 500))) return exit('downstream shim has exited');
      if (conns.size > 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function exit(reason: string): Promise<void> {
    if (exiting || conns.size > 0) return;
    exiting = true;
    log.info('katavol shim daemon exiting', { reason });
    podChannel?.close();
    server.close();
    await interceptor.releaseAll().catch((e) => log.error('release on exit failed', { error: String(e) }));
    fs.rmSync(ourSock, { force: true });
    fs.rmSync(pidFile, { force: true });
    // The runc shim removes the socket named in ./address (ours) and leaves its own behind.
    await removeIfDeadSocket(downSock);
    await log.close();
    process.exit(0);
  }
}
