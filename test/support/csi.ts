// The CSI plugin as kubelet and csi-provisioner see it: `bin/katavol csi` started as its own process
// on private scratch paths, and a gRPC client on the unmodified csi.proto. Restarting the process
// between calls proves the plugin keeps nothing it needs in memory.
import * as fs from 'fs';
import * as path from 'path';
import { spawn, type ChildProcess } from 'child_process';
import * as grpc from '@grpc/grpc-js';
import { KATAVOL } from './containerd';
import { loadCsi } from '../../src/csi/proto';

export interface CsiDirs {
  /** Scratch root holding everything below. */
  root: string;
  kubelet: string;
  storage: string;
  state: string;
  volumeRoot: string;
  socket: string;
}

export function csiDirs(root: string): CsiDirs {
  const d = { root, kubelet: path.join(root, 'kubelet'), storage: path.join(root, 'storage'), state: path.join(root, 'state'), volumeRoot: path.join(root, 'volumes'), socket: path.join(root, 'csi.sock') };
  fs.mkdirSync(d.kubelet, { recursive: true });
  return d;
}

type Call = (req: object) => Promise<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface CsiClient {
  identity: Record<string, Call>;
  controller: Record<string, Call>;
  node: Record<string, Call>;
  close(): void;
}

function promisified(client: grpc.Client): Record<string, Call> {
  return new Proxy({}, {
    get: (_t, method: string) => (req: object) => new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, Function>)[method]; // eslint-disable-line @typescript-eslint/no-unsafe-function-type
      if (typeof fn !== 'function') return reject(new Error(`no CSI method ${method}`));
      fn.call(client, req, { deadline: Date.now() + 60000 }, (e: grpc.ServiceError | null, r: Record<string, unknown>) => (e ? reject(e) : resolve(r)));
    }),
  });
}

export function csiClient(socket: string): CsiClient {
  const csi = loadCsi();
  const addr = `unix://${socket}`;
  const creds = grpc.credentials.createInsecure();
  const clients = [new csi.Identity(addr, creds), new csi.Controller(addr, creds), new csi.Node(addr, creds)];
  return {
    identity: promisified(clients[0]),
    controller: promisified(clients[1]),
    node: promisified(clients[2]),
    close: () => clients.forEach((c) => c.close()),
  };
}

/** Rejects unless `p` fails with gRPC `code`; returns the error for further checks. */
export async function expectCode(p: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    const err = e as grpc.ServiceError;
    if (err.code !== code) throw new Error(`expected ${grpc.status[code]}, got ${grpc.status[err.code] ?? err.code}: ${err.details ?? err.message}`);
    return err;
  }
  throw new Error(`expected ${grpc.status[code]}, but the call succeeded`);
}

export class CsiPlugin {
  private proc: ChildProcess | undefined;
  private client: CsiClient | undefined;
  readonly log: string;
  /** How many times the plugin process was started. */
  starts = 0;

  constructor(readonly dirs: CsiDirs, readonly extraArgs: string[] = [], readonly env: Record<string, string> = {}) {
    this.log = path.join(dirs.root, 'csi.log');
  }

  get args(): string[] {
    const d = this.dirs;
    return ['csi', '--endpoint', `unix://${d.socket}`, '--node-id', 'node-a', '--storage', d.storage, '--state', d.state, '--kubelet-dir', d.kubelet, ...this.extraArgs];
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async start(): Promise<CsiClient> {
    const fd = fs.openSync(this.log, 'a');
    const p = spawn(KATAVOL, this.args, { stdio: ['ignore', fd, fd], env: { ...process.env, KATAVOL_VOLUME_ROOT: this.dirs.volumeRoot, ...this.env } });
    fs.closeSync(fd);
    this.proc = p;
    this.starts++;
    const c = csiClient(this.dirs.socket);
    for (let i = 0; i < 400; i++) {
      if (p.exitCode !== null) break;
      try {
        await c.identity.Probe({});
        this.client = c;
        return c;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    c.close();
    await this.stop();
    throw new Error(`katavol csi did not start; log:\n${fs.readFileSync(this.log, 'utf8').slice(-3000)}`);
  }

  /** SIGTERM, then wait for the process to exit (SIGKILL after 20 s). */
  async stop(): Promise<void> {
    this.client?.close();
    this.client = undefined;
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 20000);
    await done;
    clearTimeout(t);
  }

  async restart(): Promise<CsiClient> {
    await this.stop();
    return this.start();
  }
}
