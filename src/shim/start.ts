// `containerd-shim-katavol-v2 ... start`: start the downstream shim exactly as containerd would, then
// put our daemon in front of it and print our own address (containerd reads it with CombinedOutput,
// so nothing else may be printed and the daemon must not hold our stdout/stderr).
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { spawn, spawnSync, type SpawnSyncReturns } from 'child_process';
import type { ShimArgs } from './args';
import { checkDownstream, loadConfig, type ShimConfig } from './config';
import { STATE_FILE, daemonPidFile, readPidFile, socketPath, writeState } from './state';
import { StartRecord, removeOwner, writeOwner } from './reaper';
import { writeFileAtomic } from '../volumes/files';
import { messageOf } from '../volumes/types';
import { canConnect, ourAddress } from './sockets';
import { CONTAINERD_OOM_ENV, DAEMON_NODE_FLAGS, parentScore } from './oom';
import { answerBootstrap, parseBootstrap, type Bootstrap } from './bootstrap';

export class StartError extends Error {
  override readonly name = 'StartError';
}

export { ourAddress } from './sockets';

function listen(p: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(p, () => { srv.removeListener('error', reject); resolve(srv); });
  });
}

/** Binds our socket, or finds our daemon already serving it (a second container of a pod). */
async function bindOrReuse(p: string): Promise<net.Server | undefined> {
  fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o711 });
  try {
    return await listen(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    if (await canConnect(p)) return undefined;
    fs.rmSync(p, { force: true }); // stale socket of a dead daemon
    return await listen(p);
  }
}

export interface Started {
  address: string;
  /** What containerd gets on stdout: the downstream's bootstrap form and version with our address. */
  answer: Buffer;
  /**
   * Inline mode only: our freshly bound socket, for this process to serve as the daemon once the
   * address is printed, with the connections that arrived meanwhile.
   */
  serve?: { server: net.Server; early: net.Socket[] };
}

/** Where a start's inputs come from when this process is not the one containerd ran (a warm daemon, a
 *  pod's daemon): the launcher's stdin bytes, environment and cwd, read through /proc. */
export interface StartInput {
  stdin?: Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called as each step ends ('downstream', 'bind', 'state'): a warm daemon logs where its start's time went. */
  mark?: (step: string) => void;
  /** Runs the downstream start without blocking (a serving daemon keeps proxying meanwhile). */
  runDownstream?: (file: string, argv: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; input: Buffer; stdout: number }) => Promise<SpawnSyncReturns<Buffer>>;
}

/**
 * `inline`: this process becomes the daemon itself (the launcher runs it in its own session and only
 * waits for the address), which saves starting a second Node process on every container start.
 * Otherwise a detached daemon is spawned with the bound socket as fd 3, as Go shims do.
 */
export async function start(args: ShimArgs, self: string, inline = false, from: StartInput = {}): Promise<Started> {
  const env = from.env ?? process.env;
  const cfg = loadConfig(env);
  checkDownstream(cfg, self);
  const bundle = args.bundle || from.cwd || process.cwd();
  const stdin = from.stdin ?? readAllStdin();

  // A record of this start, so that if this process dies from here on (SIGKILL, OOM) a sweep stops
  // what the downstream start made (reaper.ts). A full or unwritable socketDir fails here, before anything runs.
  let rec: StartRecord;
  try {
    rec = StartRecord.open(cfg.socketDir, { id: args.id, bundle, downstream: cfg.downstream });
  } catch (e) {
    throw new StartError(`cannot write the start record in socketDir ${cfg.socketDir} (config ${cfg.file}): ${messageOf(e)}; nothing was started: free space there or point socketDir at a writable directory`, { cause: e });
  }
  try {
    return await startDownstreamAndServe(args, self, inline, from, { cfg, env, bundle, stdin, rec });
  } finally {
    rec.remove();
  }
}

/** What a start has in hand before it runs anything: the config, containerd's env, the bundle, its stdin, the start record. */
interface StartContext {
  cfg: ShimConfig;
  env: NodeJS.ProcessEnv;
  bundle: string;
  stdin: Buffer;
  rec: StartRecord;
}

async function startDownstreamAndServe(args: ShimArgs, self: string, inline: boolean, from: StartInput, ctx: StartContext): Promise<Started> {
  const boot = await runDownstreamStart(args, from, ctx);
  const own: { socket?: string } = {};
  try {
    return await serveDownstream(args, self, inline, from, ctx, boot, own);
  } catch (e) {
    await undoServe(args.id, ctx.bundle, boot, own.socket);
    throw new StartError(`katavol start after downstream start: ${messageOf(e)}`, { cause: e });
  }
}

/**
 * The downstream start: same argv, env (TTRPC_ADDRESS...), cwd and stdin bytes as containerd gave us;
 * its stdout goes into the start record, so its answer outlives us. Returns what it announced.
 */
async function runDownstreamStart(args: ShimArgs, from: StartInput, { cfg, env, bundle, stdin, rec }: StartContext): Promise<Bootstrap> {
  const dsOpts = { cwd: bundle, env: containerdEnv(env), input: stdin, stdout: rec.fd! };
  const ds = from.runDownstream ? await from.runDownstream(cfg.downstream, args.argv, dsOpts)
    : spawnSync(cfg.downstream, args.argv, { ...dsOpts, stdio: ['pipe', dsOpts.stdout, 'pipe'], maxBuffer: 1 << 20 });
  const out = rec.output();
  from.mark?.('downstream');
  if (ds.error) throw new StartError(`cannot run downstream shim ${cfg.downstream}: ${ds.error.message}`);
  if (ds.status !== 0) {
    throw new StartError(`downstream shim ${cfg.downstream} start failed (exit ${ds.status ?? ds.signal}): ${((ds.stderr?.toString() ?? '') + out.toString()).trim()}`);
  }
  try {
    return parseBootstrap(out, cfg.downstream);
  } catch (e) {
    // Nobody will ever talk to what that start may have left running: stop it if it named its pid.
    const pid = readPidFile(path.join(bundle, 'shim.pid'));
    if (pid) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    throw new StartError(messageOf(e), { cause: e });
  }
}

/**
 * Our side of the start: our socket, bound here and handed to the daemon so containerd can connect at
 * once (or the pod's daemon's, already bound); the bundle's state and ./address; then who serves it:
 * this process (inline), a detached daemon, or the pod's running daemon. `own.socket` names a socket
 * this start bound and still holds, for undoServe.
 */
async function serveDownstream(args: ShimArgs, self: string, inline: boolean, from: StartInput, { cfg, env, bundle }: StartContext,
  boot: Bootstrap, own: { socket?: string }): Promise<Started> {
  const downstreamAddress = boot.address;
  const address = ourAddress(cfg.socketDir, downstreamAddress);
  const sock = socketPath(address);
  const server = await bindOrReuse(sock);
  if (server) {
    own.socket = sock;
    fs.chmodSync(sock, 0o600);
    // From here the daemon record, not the start record, says who answers for the downstream.
    inSocketDir(cfg.socketDir, 'record the daemon', () => writeOwner(sock, { id: args.id, downstreamAddress, version: boot.version, daemonPid: process.pid }));
  }
  from.mark?.('bind');
  const state = {
    address, downstreamAddress, downstream: cfg.downstream, backend: cfg.backend,
    downstreamPid: readPidFile(path.join(bundle, 'shim.pid')),
    bootstrap: { form: boot.form, version: boot.version, output: boot.raw.toString('base64') },
  };
  const answer = answerBootstrap(boot, address);
  const serveHere = server && inline;
  // Inline, this process is the daemon: the state names it at once (one write, not two).
  writeState(bundle, serveHere ? { ...state, daemonPid: process.pid } : state);
  // containerd 1.6/1.7 reconnect after a restart through ./address only: it must name us.
  writeFileAtomic(path.join(bundle, 'address'), address, { mode: 0o644, durable: false });

  if (serveHere) {
    // Connections can only come once the address is printed, but keep any rather than lose one.
    const early: net.Socket[] = [];
    server.on('connection', (c) => early.push(c));
    // Written now, not when the daemon part starts: a pod's next start may look for it right away.
    inSocketDir(cfg.socketDir, 'write the daemon\'s pid file', () => fs.writeFileSync(daemonPidFile(sock), `${process.pid}\n`));
    from.mark?.('state');
    return { address, answer, serve: { server, early } };
  }
  if (server) {
    const daemonPid = spawnDaemon(args, self, env, bundle, server);
    own.socket = undefined; // the daemon has it now
    // Best effort: while the record still names us, a sweep sees the daemon by its listening socket.
    try { writeOwner(sock, { id: args.id, downstreamAddress, version: boot.version, daemonPid: daemonPid! }); } catch { /* see above */ }
    writeState(bundle, { ...state, daemonPid });
  } else {
    // A pod's existing daemon serves this container too; it recorded its pid next to its socket.
    writeState(bundle, { ...state, daemonPid: readPidFile(daemonPidFile(sock)) });
  }
  return { address, answer };
}

/** A detached daemon (its own session) given our bound socket as fd 3, as Go shims do; its pid. */
function spawnDaemon(args: ShimArgs, self: string, env: NodeJS.ProcessEnv, bundle: string, server: net.Server): number | undefined {
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  const daemonArgv = args.argv.filter((a, i) => !(a === 'start' && i === args.argv.length - 1));
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, self, ...daemonArgv], {
    cwd: bundle,
    detached: true, // own session: containerd's CombinedOutput must not wait on it
    stdio: ['ignore', 'ignore', 'ignore', fd],
    // containerd runs `start`: our parent is the one whose OOM score the daemon follows.
    env: { ...containerdEnv(env), KATAVOL_LISTEN_FD: '3', [CONTAINERD_OOM_ENV]: parentScore() },
  });
  child.unref();
  return child.pid;
}

/**
 * containerd will not call delete for a failed start: don't leave a fresh downstream daemon behind
 * (a shared one with other tasks answers Shutdown as a no-op, so it is not disturbed), nor our socket.
 */
async function undoServe(id: string, bundle: string, boot: Bootstrap, socket: string | undefined): Promise<void> {
  const { stopDownstream } = await import('./downstream');
  await stopDownstream(id, boot.address, { force: false, version: boot.version }).catch(() => undefined);
  if (socket) {
    fs.rmSync(socket, { force: true });
    fs.rmSync(daemonPidFile(socket), { force: true });
    removeOwner(socket, process.pid);
  }
  fs.rmSync(path.join(bundle, STATE_FILE), { force: true });
}

/** A write to socketDir whose failure (ENOSPC...) says where and what to do. */
function inSocketDir(dir: string, what: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    throw new Error(`cannot ${what} in socketDir ${dir}: ${messageOf(e)}; free space there`, { cause: e });
  }
}

/** The launcher's own variables are not containerd's: the downstream must see exactly containerd's env. */
export const LAUNCHER_ENV = ['KATAVOL_START_INLINE', 'KATAVOL_START_ANSWER', CONTAINERD_OOM_ENV];

export function containerdEnv(from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...from };
  for (const k of LAUNCHER_ENV) delete env[k];
  return env;
}

function readAllStdin(): Buffer {
  try {
    return fs.readFileSync(0);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EOF' || code === 'ENXIO' || code === 'EINVAL') return Buffer.alloc(0);
    throw e;
  }
}
