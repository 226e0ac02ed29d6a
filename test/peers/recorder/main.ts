// containerd-shim-recorder-v2: a test double for Kata's containerd-shim-kata-v2 (Kata needs KVM), and
// with $KATAVOL_RECORDER_KIND for the runc shims of other containerd releases (see KINDS: what each
// prints on `start` and the one task API it serves). It speaks the shim v2 protocol well enough for
// `ctr run -d`, `ctr task kill/delete` and a Create that containerd cleans up after a failure, and
// records every call into $KATAVOL_RECORDER_DIR (see record.ts): each start's argv, environment and
// stdin bytes, each call, and a copy of <bundle>/config.json at each Create. Built on our own TTRPC
// library, so it needs no Go toolchain and starts as fast as the katavol shim in front of it.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { spawn } from 'child_process';
import { Code, Server, TtrpcError } from '../../../src/ttrpc';
import { parseShimArgs, type ShimArgs } from '../../../src/shim/args';
import { decodeCreateTaskRequest } from '../../../src/shim/messages';
import { appendRecord, RECORDER_DIR_ENV, saveCreateConfig } from './record';
import * as m from './task-messages';

/** The recorder's bulk-traffic service (see its registration below). */
export const FLOOD_SERVICE = 'katavol.test.v1.Flood';
import { printBootstrap, type Form } from '../bootstrap-forms';

const NAME = 'containerd-shim-recorder-v2';
export const KIND_ENV = 'KATAVOL_RECORDER_KIND';

/**
 * The downstreams katavol meets (shared/reference/containerd-versions.md §1.1, §1.3, §3.3):
 *   kata      Kata runtime-rs / Go: plain address, task v2, writes shim.pid
 *   runc-1.7  containerd 1.7's runc shim: plain address, task v2, no shim.pid
 *   runc-2.0  containerd 2.0-2.2's runc shim: JSON version 3, task v3 only, no shim.pid
 *   runc-2.3  containerd 2.3's runc shim: protobuf BootstrapResult version 3, task v3 only, no shim.pid
 *   grpc      a shim announcing gRPC (katavol must refuse it); starts no daemon
 */
export const KINDS = {
  'kata': { form: 'plain', service: 'containerd.task.v2.Task', pidFile: true },
  'runc-1.7': { form: 'plain', service: 'containerd.task.v2.Task', pidFile: false },
  'runc-2.0': { form: 'json3', service: 'containerd.task.v3.Task', pidFile: false },
  'runc-2.3': { form: 'protobuf', service: 'containerd.task.v3.Task', pidFile: false },
  'grpc': { form: 'grpc', service: 'containerd.task.v3.Task', pidFile: false },
} as const satisfies Record<string, { form: Form; service: string; pidFile: boolean }>;
export type Kind = keyof typeof KINDS;

function kind(): (typeof KINDS)[Kind] {
  const k = process.env[KIND_ENV] || 'kata';
  if (!(k in KINDS)) throw new Error(`${KIND_ENV}=${k}: expected one of ${Object.keys(KINDS).join(', ')}`);
  return KINDS[k as Kind];
}
const SANDBOX_ANNOTATION = 'io.kubernetes.cri.sandbox-id';

export function main(argv: string[]): void {
  let args: ShimArgs;
  try {
    args = parseShimArgs(argv);
  } catch (e) {
    process.stderr.write(`${NAME}: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const run = args.action === 'start' ? start(args) : args.action === 'delete' ? del(args) : daemon(args);
  run.catch((e: Error) => {
    process.stderr.write(`${NAME}: ${e.message}`);
    process.exit(1);
  });
}

function recordDir(): string {
  const dir = process.env[RECORDER_DIR_ENV];
  if (!dir || !path.isAbsolute(dir)) throw new Error(`set ${RECORDER_DIR_ENV} to an absolute directory (the test's record directory)`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** One daemon per sandbox (like Kata): containers of a pod share it through the CRI annotation. */
function groupOf(bundle: string, id: string): string {
  try {
    const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')) as { annotations?: Record<string, string> };
    return spec.annotations?.[SANDBOX_ANNOTATION] || id;
  } catch {
    return id;
  }
}

function listen(p: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(p, () => resolve(srv));
  });
}

function connects(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function readStdin(): Buffer {
  try { return fs.readFileSync(0); } catch { return Buffer.alloc(0); }
}

async function start(args: ShimArgs): Promise<void> {
  const dir = recordDir();
  const bundle = process.cwd();
  const k = kind();
  appendRecord(dir, {
    kind: 'action', action: 'start', id: args.id, namespace: args.namespace, cwd: bundle, argv: args.argv,
    env: { ...process.env } as Record<string, string>, stdin: readStdin().toString('hex'),
  });
  const hash = crypto.createHash('sha256').update(`${args.namespace}/${groupOf(bundle, args.id)}`).digest('hex').slice(0, 16);
  const sock = path.join(dir, `${hash}.sock`);
  const address = `unix://${sock}`;
  const answer = printBootstrap(k.form, address);
  if (k.form === 'grpc') return void process.stdout.write(answer, () => process.exit(0));
  let srv: net.Server;
  try {
    srv = await listen(sock);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    if (await connects(sock)) {
      // The sandbox's daemon already serves this container.
      fs.writeFileSync(path.join(bundle, 'address'), address);
      process.stdout.write(answer, () => process.exit(0));
      return;
    }
    fs.rmSync(sock, { force: true });
    srv = await listen(sock);
  }
  const fd = (srv as unknown as { _handle: { fd: number } })._handle.fd;
  const daemonArgv = args.argv.filter((a, i) => !(a === 'start' && i === args.argv.length - 1));
  const child = spawn(process.execPath, [process.argv[1], ...daemonArgv], {
    cwd: bundle,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', fd],
    env: { ...process.env, RECORDER_LISTEN_FD: '3', RECORDER_SOCKET: sock },
  });
  child.unref();
  fs.writeFileSync(path.join(bundle, 'address'), address);
  if (k.pidFile) fs.writeFileSync(path.join(bundle, 'shim.pid'), String(child.pid));
  process.stdout.write(answer, () => process.exit(0));
}

async function del(args: ShimArgs): Promise<void> {
  appendRecord(recordDir(), { kind: 'action', action: 'delete', id: args.id, namespace: args.namespace, cwd: process.cwd(), argv: args.argv, env: { ...process.env } as Record<string, string> });
  process.stdout.write(m.encodeDeleteResponse(0, 137, m.now()), () => process.exit(0));
}

interface Task {
  bundle: string;
  status: m.TaskStatus;
  exitStatus: number;
  exitedAt?: m.Timestamp;
  waiters: Array<() => void>;
}

async function daemon(args: ShimArgs): Promise<void> {
  const dir = recordDir();
  // Only the API the start announced: a v3-only runc shim answers v2 calls with Unimplemented.
  const TASK_SERVICE = kind().service;
  const tasks = new Map<string, Task>();
  // The "process" of every task is this daemon: a real pid that containerd can show.
  const pid = process.pid;
  const server = new Server({ onError: (e) => fs.appendFileSync(path.join(dir, 'recorder-errors.log'), `${e.message}\n`) });
  // Not ./address: katavol overwrites that with its own address.
  const sockPath = process.env.RECORDER_SOCKET ?? '';

  const task = (id: string, execId = ''): Task => {
    const t = tasks.get(id);
    if (!t) throw new TtrpcError(Code.NotFound, `task ${id} not found`);
    if (execId) throw new TtrpcError(Code.NotFound, `exec ${execId} of task ${id} not found (the recorder runs no execs)`);
    return t;
  };
  const stop = (t: Task, status: number) => {
    if (t.status === m.TaskStatus.Stopped) return;
    t.status = m.TaskStatus.Stopped;
    t.exitStatus = status;
    t.exitedAt = m.now();
    for (const w of t.waiters.splice(0)) w();
  };

  const handlers: Record<string, (payload: Buffer, req: ReturnType<typeof m.decodeTaskRequest>) => Uint8Array | Promise<Uint8Array>> = {
    Create: (payload) => {
      const { id, bundle } = decodeCreateTaskRequest(payload);
      if (tasks.has(id)) throw new TtrpcError(Code.AlreadyExists, `task ${id} already exists`);
      tasks.set(id, { bundle, status: m.TaskStatus.Created, exitStatus: 0, waiters: [] });
      return m.encodePid(pid);
    },
    Start: (_p, r) => {
      const t = task(r.id, r.execId);
      if (t.status !== m.TaskStatus.Created) throw new TtrpcError(Code.FailedPrecondition, `task ${r.id} is not in the created state`);
      t.status = m.TaskStatus.Running;
      return m.encodePid(pid);
    },
    State: (_p, r) => {
      const t = task(r.id, r.execId);
      return m.encodeStateResponse({ id: r.id, bundle: t.bundle, pid, status: t.status, exitStatus: t.exitStatus, exitedAt: t.exitedAt });
    },
    Wait: async (_p, r) => {
      const t = task(r.id, r.execId);
      if (t.status !== m.TaskStatus.Stopped) await new Promise<void>((resolve) => t.waiters.push(resolve));
      return m.encodeWaitResponse(t.exitStatus, t.exitedAt!);
    },
    Kill: (_p, r) => {
      stop(task(r.id, r.execId), 128 + (r.signal || 15));
      return new Uint8Array(0);
    },
    Delete: (_p, r) => {
      const t = task(r.id, r.execId);
      if (t.status === m.TaskStatus.Running) throw new TtrpcError(Code.FailedPrecondition, `task ${r.id} is running; kill it first`);
      tasks.delete(r.id);
      stop(t, t.exitStatus);
      return m.encodeDeleteResponse(pid, t.exitStatus, t.exitedAt!);
    },
    Pids: (_p, r) => {
      task(r.id);
      return m.encodePidsResponse([pid]);
    },
    Connect: (_p, r) => m.encodeConnectResponse(pid, tasks.has(r.id) ? pid : 0, 'recorder'),
    Shutdown: () => {
      // Like runc and Kata: a no-op while the shim still serves a task.
      if (tasks.size === 0) setTimeout(exit, 20);
      return new Uint8Array(0);
    },
  };
  const unimplemented = ['Pause', 'Resume', 'Checkpoint', 'Exec', 'ResizePty', 'CloseIO', 'Update', 'Stats'];

  const methods: Record<string, (ctx: unknown, payload: Buffer) => Promise<Uint8Array>> = {};
  for (const name of [...Object.keys(handlers), ...unimplemented]) {
    methods[name] = async (_ctx, payload) => {
      const req = m.decodeTaskRequest(payload);
      const rec = { kind: 'rpc' as const, service: TASK_SERVICE, method: name, id: req.id, payload: payload.toString('hex'), pid };
      if (name === 'Create') {
        const { id, bundle } = decodeCreateTaskRequest(payload);
        appendRecord(dir, { ...rec, id, config: saveCreateConfig(dir, id, bundle) });
      } else {
        appendRecord(dir, rec);
      }
      const h = handlers[name];
      if (!h) throw new TtrpcError(Code.Unimplemented, `${name} is not implemented by the recording shim`);
      return h(payload, req);
    };
  }
  server.register(TASK_SERVICE, methods);
  // Bulk traffic for the memory-pressure flood (test/shim/flood.test.ts), not recorded: Echo answers the
  // payload it got, Fill answers as many bytes as the 4-byte big-endian length it is sent.
  server.register(FLOOD_SERVICE, {
    Echo: (_ctx, payload) => payload,
    Fill: (_ctx, payload) => Buffer.alloc(payload.length >= 4 ? payload.readUInt32BE(0) : 0, 0x5a),
  });

  function exit(): void {
    server.close();
    if (sockPath) fs.rmSync(sockPath, { force: true });
    process.exit(0);
  }
  process.on('SIGTERM', exit);
  await server.listenFd(Number(process.env.RECORDER_LISTEN_FD ?? '3'));
  void args;
}
