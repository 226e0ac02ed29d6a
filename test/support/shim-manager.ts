// A test helper that plays containerd's shim manager of one release (1.6, 1.7, 2.0, 2.1, 2.2, 2.3) against
// a shim binary: how it runs `start` and `delete` (argv, env, stdin), how it reads the start answer, which
// task API it then speaks, when it sends Shutdown, how it cleans up after a dead shim, and whether a pod's
// app containers get their own `start`/`delete`. Only this machine's containerd 1.6 can run for real; the
// others are modelled from their sources, as cited from shared/reference/containerd-versions.md (CV §) and
// shim-protocol.md (SP §). "2.0" is 2.0.0-2.0.5 (before containerd PR #11793 and the 2.0.7 Downgrade).
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { Writer } from 'protobufjs/minimal';
import { Client } from '../../src/ttrpc';
import { decodeBootstrapResult, encodeBootstrapParams } from '../peers/bootstrap-forms';

export const VERSIONS = ['1.6', '1.7', '2.0', '2.1', '2.2', '2.3'] as const;
export type Version = (typeof VERSIONS)[number];
const at = (v: Version, min: Version): boolean => VERSIONS.indexOf(v) >= VERSIONS.indexOf(min);

export interface ManagerOptions {
  version: Version;
  /** The runtime binary containerd runs (katavol's launcher, or a downstream shim directly). */
  runtime: string;
  namespace: string;
  /** <state>/io.containerd.runtime.v2.task: bundles are <taskRoot>/<namespace>/<id>. */
  taskRoot: string;
  /** containerd's gRPC socket (-address, GRPC_ADDRESS); TTRPC_ADDRESS is this + ".ttrpc". */
  grpcAddress: string;
  /** containerd's own environment (the shim's env is this plus the version's additions). */
  env: NodeJS.ProcessEnv;
}

/** What containerd ran a shim binary with: recorded so tests can compare it with what a downstream got. */
export interface Invocation { argv: string[]; env: Record<string, string>; stdin: Buffer; cwd: string }

export interface Bootstrap { version: number; address: string; protocol: string }

/** One shim connection as containerd holds it for a task. */
export interface ShimTask {
  id: string;
  bundle: string;
  sandboxId: string;
  client: Client;
  version: number;
  /** containerd ran `start` for it, so its connection's onClose runs `delete` (not for reused pod connections). */
  ownStart: boolean;
  closed: Promise<void>;
}

const CONTAINERD = '/usr/local/bin/containerd';

export class ShimManager {
  /** Every start/delete containerd ran, in order. */
  readonly invocations: Array<Invocation & { action: 'start' | 'delete' }> = [];
  private readonly sandboxes = new Map<string, Bootstrap>();

  constructor(readonly o: ManagerOptions) {}

  get version(): Version { return this.o.version; }

  bundleOf(id: string): string {
    return path.join(this.o.taskRoot, this.o.namespace, id);
  }

  /** Env added to containerd's own (CV §3.1, SP §1): 1.6 GOMAXPROCS + TTRPC_ADDRESS; 1.7+ also
   *  MAX_SHIM_VERSION=2 (still 2 in 2.x), GRPC_ADDRESS, NAMESPACE. */
  shimEnv(): Record<string, string> {
    const env = { ...this.o.env } as Record<string, string>;
    env.GOMAXPROCS = '2';
    env.TTRPC_ADDRESS = `${this.o.grpcAddress}.ttrpc`;
    if (at(this.o.version, '1.7')) {
      env.MAX_SHIM_VERSION = '2';
      env.GRPC_ADDRESS = this.o.grpcAddress;
      env.NAMESPACE = this.o.namespace;
    }
    return env;
  }

  /** argv (SP §1): `-namespace -address -publish-binary -id ID start`; delete adds `-bundle` (2.3 too: CV §3.1). */
  argv(id: string, action: 'start' | 'delete'): string[] {
    const common = ['-namespace', this.o.namespace, '-address', this.o.grpcAddress, '-publish-binary', CONTAINERD, '-id', id];
    return action === 'start' ? [...common, 'start'] : [...common, '-bundle', this.bundleOf(id), 'delete'];
  }

  /** stdin of start (SP §1): ≤2.2 the marshalled runtime-options Any; 2.3 a BootstrapParams (CV §3.1). */
  startStdin(id: string): Buffer {
    if (this.o.version === '2.3') {
      return encodeBootstrapParams({ id, namespace: this.o.namespace, version: 'v2.3.0', ttrpcAddress: `${this.o.grpcAddress}.ttrpc`, grpcAddress: this.o.grpcAddress, binary: CONTAINERD });
    }
    // Any{type_url=1, value=2} with a value holding a NUL and a newline: bytes must arrive unchanged.
    return Buffer.from(Writer.create().uint32(10).string('type.example/katavol.test.Options').uint32(18).bytes(Buffer.from([1, 0, 10, 2])).finish());
  }

  /**
   * How this release reads the start output (CombinedOutput, SP §1 / CV §1.2):
   *   1.6      trimmed text = address, version 2
   *   1.7-2.2  trimmed; JSON {version,address,protocol} when it parses with version >= 2, else the text; version
   *            above 2 (1.7) / 3 (2.x) -> "unsupported shim version (N): not implemented"
   *   2.3      protobuf BootstrapResult on the untrimmed output first, then as 2.2
   * and then refuses a protocol it cannot dial (makeConnection: ttrpc; gRPC exists but is not played here).
   */
  parseStart(out: Buffer): Bootstrap {
    let b: Bootstrap | undefined;
    if (this.o.version === '2.3') b = protobufResult(out);
    if (!b) {
      const text = out.toString('utf8').trim();
      b = { version: 2, address: text, protocol: 'ttrpc' };
      if (this.o.version !== '1.6') {
        try {
          const j = JSON.parse(text) as Record<string, unknown>;
          if (Number.isInteger(j.version) && (j.version as number) >= 2) b = { version: j.version as number, address: typeof j.address === 'string' ? j.address : '', protocol: typeof j.protocol === 'string' ? j.protocol : '' };
        } catch { /* a plain address */ }
      }
    }
    const max = this.o.version === '1.7' ? 2 : 3;
    if (this.o.version !== '1.6' && this.o.version !== '2.3' && b.version > max) throw new Error(`unsupported shim version (${b.version}): not implemented`);
    if (b.protocol.toLowerCase() !== 'ttrpc') throw new Error(`unexpected protocol: ${JSON.stringify(b.protocol)}`);
    return b;
  }

  private run(action: 'start' | 'delete', id: string, bundle: string, stdin: Buffer): Promise<{ out: Buffer; status: number }> {
    const inv = { action, argv: this.argv(id, action), env: this.shimEnv(), stdin, cwd: bundle };
    this.invocations.push(inv);
    return new Promise((resolve, reject) => {
      const p = spawn(this.o.runtime, inv.argv, { cwd: bundle, env: inv.env, stdio: ['pipe', 'pipe', 'pipe'] });
      const chunks: Buffer[] = [];
      p.stdout.on('data', (c: Buffer) => chunks.push(c));
      p.stderr.on('data', (c: Buffer) => chunks.push(c)); // CombinedOutput
      p.on('error', reject);
      p.on('close', (code) => resolve({ out: Buffer.concat(chunks), status: code ?? 1 }));
      p.stdin.end(stdin);
    });
  }

  /**
   * A task's shim. Pod app containers (sandboxId set and not their own) reuse the sandbox's connection
   * parameters without running `start` on 2.0, and on 2.1+ when the sandbox announced version 3
   * (CV §3.4; SP §2 "containerd-side grouping"). Everything else runs `start`.
   */
  async start(id: string, sandboxId = id): Promise<ShimTask> {
    const bundle = this.bundleOf(id);
    const pod = this.sandboxes.get(sandboxId);
    const reuse = sandboxId !== id && pod !== undefined && (this.o.version === '2.0' || (at(this.o.version, '2.1') && pod.version >= 3));
    let b: Bootstrap;
    if (reuse) {
      b = pod!;
    } else {
      const r = await this.run('start', id, bundle, this.startStdin(id));
      if (r.status !== 0) throw new Error(`start failed: ${r.out.toString()}: exit status ${r.status}`);
      b = this.parseStart(r.out);
      if (sandboxId === id) this.sandboxes.set(id, b);
    }
    // 2.0+ keeps the answer as bootstrap.json for restarts (CV §3.3).
    if (at(this.o.version, '2.0')) fs.writeFileSync(path.join(bundle, 'bootstrap.json'), JSON.stringify(b));
    const sock = b.address.startsWith('unix://') ? b.address.slice(7) : '\0' + b.address;
    const client = await Client.connect(sock);
    const closed = new Promise<void>((resolve) => client.onClose(() => resolve()));
    return { id, bundle, sandboxId, client, version: b.version, ownStart: !reuse, closed };
  }

  /**
   * containerd restarted (SP §2 "Restart recovery", CV §3.3 Reload): its connections closed with it (no
   * clean-up runs: the process was gone), the shims stay. On start it reloads each bundle: 2.0+ from
   * bootstrap.json, 1.6/1.7 from ./address as version 2; dials it, asks Connect for the pid (a failure
   * would mean cleanupAfterDeadShim) and, 1.7+, Pids (a non-sandbox shim with none is reaped as leaked).
   */
  async restart(tasks: ShimTask[]): Promise<ShimTask[]> {
    for (const t of tasks) t.client.close();
    await Promise.all(tasks.map((t) => t.closed));
    const out: ShimTask[] = [];
    for (const t of tasks) {
      const file = path.join(t.bundle, 'bootstrap.json');
      const b: Bootstrap = at(this.o.version, '2.0') && fs.existsSync(file)
        ? JSON.parse(fs.readFileSync(file, 'utf8')) as Bootstrap
        : { version: 2, address: fs.readFileSync(path.join(t.bundle, 'address'), 'utf8').trim(), protocol: 'ttrpc' };
      const client = await Client.connect(b.address.startsWith('unix://') ? b.address.slice(7) : '\0' + b.address);
      const closed = new Promise<void>((resolve) => client.onClose(() => resolve()));
      const re: ShimTask = { ...t, client, closed, version: b.version };
      await this.call(re, 'Connect', idRequest(t.id));
      if (this.o.version !== '1.6') await this.call(re, 'Pids', idRequest(t.id));
      out.push(re);
    }
    return out;
  }

  /** The task API of the announced version (CV §1.3: 2 -> task.v2, 3 -> task.v3). */
  service(t: ShimTask): string {
    return t.version >= 3 ? 'containerd.task.v3.Task' : 'containerd.task.v2.Task';
  }

  async call(t: ShimTask, method: string, payload: Uint8Array): Promise<Buffer> {
    try {
      return await t.client.call(this.service(t), method, payload, { timeoutMs: 10000 });
    } catch (e) {
      // 2.1+ Create downgrades 3 -> 2 on Unimplemented and retries (CV §1.3); 2.0.0 cannot.
      if (method === 'Create' && (e as { code?: number }).code === 12 && t.version === 3 && at(this.o.version, '2.1')) {
        t.version = 2;
        return t.client.call(this.service(t), method, payload, { timeoutMs: 10000 });
      }
      throw e;
    }
  }

  async create(t: ShimTask): Promise<void> {
    await this.call(t, 'Create', Writer.create().uint32(10).string(t.id).uint32(18).string(t.bundle).finish());
  }

  async startTask(t: ShimTask): Promise<void> {
    await this.call(t, 'Start', idRequest(t.id));
  }

  /** KillRequest{id=1, signal=3}. */
  async kill(t: ShimTask, signal = 9): Promise<void> {
    await this.call(t, 'Kill', Writer.create().uint32(10).string(t.id).uint32(24).uint32(signal).finish());
  }

  /** ConnectResponse.shim_pid (field 1). */
  async shimPid(t: ShimTask): Promise<number> {
    const r = await this.call(t, 'Connect', idRequest(t.id));
    return r.length > 1 && r[0] === 8 ? decodeVarint(r, 1) : 0;
  }

  /**
   * containerd's task delete (CV §3.3 `shimTask.delete`, SP §6): Delete, then Shutdown unless the task is a
   * pod container on a version-3 shim (2.x), close; a shim containerd started then gets its `delete` run
   * by the connection's onClose.
   */
  async deleteTask(t: ShimTask): Promise<void> {
    await this.call(t, 'Delete', idRequest(t.id));
    const sandboxed = t.sandboxId !== t.id;
    if (!(at(this.o.version, '2.0') && sandboxed && t.version >= 3)) {
      await this.call(t, 'Shutdown', idRequest(t.id)).catch((e: Error) => {
        if (!/closed/.test(e.message)) throw e; // ErrClosed is tolerated (Kata exits without answering)
      });
    }
    t.client.close();
    await t.closed;
    if (t.ownStart) await this.cleanupAfterDeadShim(t);
  }

  /** onClose of a connection containerd started: run `delete` (SP §6; CV §3.3). Reused pod connections: a no-op. */
  async cleanupAfterDeadShim(t: ShimTask): Promise<{ out: Buffer; status: number } | undefined> {
    if (!t.ownStart) return undefined;
    return this.run('delete', t.id, t.bundle, Buffer.alloc(0));
  }

  /** A dead shim: every connection containerd holds closes, and each one's onClose runs, concurrently. */
  async shimDied(tasks: ShimTask[]): Promise<Array<{ id: string; out: Buffer; status: number }>> {
    await Promise.all(tasks.map((t) => t.closed));
    const done = await Promise.all(tasks.map(async (t) => ({ id: t.id, r: await this.cleanupAfterDeadShim(t) })));
    return done.filter((d) => d.r).map((d) => ({ id: d.id, ...d.r! }));
  }

  /** The start invocations containerd made, for comparison with what a downstream received. */
  starts(): Invocation[] {
    return this.invocations.filter((i) => i.action === 'start');
  }
}

function decodeVarint(b: Buffer, at: number): number {
  let v = 0;
  for (let i = 0, shift = 0; i < 5; i++, shift += 7) {
    v += (b[at + i] & 0x7f) * 2 ** shift;
    if (b[at + i] < 0x80) break;
  }
  return v;
}

function idRequest(id: string): Uint8Array {
  return Writer.create().uint32(10).string(id).finish();
}

/** proto.Unmarshal succeeds on anything well-formed; a text address or JSON never is (CV §1.2). */
function protobufResult(out: Buffer): Bootstrap | undefined {
  try {
    const r = decodeBootstrapResult(out);
    return { version: r.version, address: r.address, protocol: r.protocol };
  } catch {
    return undefined;
  }
}
