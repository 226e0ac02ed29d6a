// A private containerd for end-to-end tests: its own root, state, sockets and config under a temp dir
// (never /run/containerd or the host's daemon), started and stopped by pid.
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'child_process';
import { WARM_FLAG, listPool } from '../../src/shim/pool';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const SHIM = path.join(REPO, 'bin', 'containerd-shim-katavol-v2');
export const KATAVOL = path.join(REPO, 'bin', 'katavol');

export interface ContainerdOptions {
  /** Extra environment for containerd (it passes its environment to shims). */
  env?: Record<string, string>;
  debug?: boolean;
  /** Config sections that enable and configure the CRI plugin (see test/support/cri.ts); without them it is disabled. */
  criToml?: (dir: string) => string[];
  /** ctr's namespace; default a unique one per instance (CRI uses k8s.io). */
  namespace?: string;
  /** Environment computed from the scratch dir (merged over env). */
  envOf?: (dir: string) => Record<string, string>;
  /** Directory prefix (short: shim socket paths must stay under 106 bytes). */
  prefix?: string;
  /**
   * containerd's state (bundles) on tmpfs, as /run/containerd is in production, while its root stays
   * under the prefix (on this disk, as /var/lib/containerd is): the benchmark measures on these terms.
   */
  stateOnTmpfs?: boolean;
}

export class PrivateContainerd {
  readonly sock: string;
  readonly state: string;
  /** Unique per instance: runc keeps container state under /run/containerd/runc/<namespace>, shared by every containerd. */
  readonly namespace: string;
  private proc: ChildProcess | undefined;
  private logFd = -1;

  private constructor(readonly dir: string, private readonly opts: ContainerdOptions) {
    this.sock = path.join(dir, 'c.sock');
    this.state = opts.stateOnTmpfs ? fs.mkdtempSync('/dev/shm/kvs-') : path.join(dir, 'state');
    this.namespace = opts.namespace ?? `katavol-test-${path.basename(dir).replace(/^kvc-/, '').toLowerCase()}`;
  }

  bundleOf(id: string): string {
    return path.join(this.state, 'io.containerd.runtime.v2.task', this.namespace, id);
  }

  static async start(opts: ContainerdOptions = {}): Promise<PrivateContainerd> {
    // Short base dir: shim socket paths must stay under 106 bytes.
    const dir = fs.mkdtempSync(opts.prefix ?? '/tmp/kvc-');
    const c = new PrivateContainerd(dir, opts);
    fs.writeFileSync(path.join(dir, 'config.toml'), [
      'version = 2',
      `root = "${dir}/root"`,
      `state = "${c.state}"`,
      ...(opts.criToml ? [] : ['disabled_plugins = ["io.containerd.grpc.v1.cri"]']),
      '[grpc]', `  address = "${c.sock}"`,
      '[ttrpc]', `  address = "${c.sock}.ttrpc"`,
      '[debug]', `  level = "${opts.debug ? 'debug' : 'info'}"`,
      ...(opts.criToml ? opts.criToml(dir) : []),
      '',
    ].join('\n'));
    await c.launch();
    return c;
  }

  get logFile(): string {
    return path.join(this.dir, 'containerd.log');
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async launch(): Promise<void> {
    this.logFd = fs.openSync(this.logFile, 'a');
    this.proc = spawn('containerd', ['--config', path.join(this.dir, 'config.toml')], {
      stdio: ['ignore', this.logFd, this.logFd],
      env: { ...process.env, ...this.opts.env, ...this.opts.envOf?.(this.dir) },
    });
    fs.closeSync(this.logFd);
    for (let i = 0; i < 200; i++) {
      if (this.ctr(['version']).status === 0) return;
      if (this.proc.exitCode !== null) break;
      await sleep(50);
    }
    throw new Error(`private containerd did not start; log:\n${fs.readFileSync(this.logFile, 'utf8').slice(-3000)}`);
  }

  ctr(args: string[], opts: { timeoutMs?: number; input?: string } = {}): SpawnSyncReturns<string> {
    return spawnSync('ctr', ['-a', this.sock, '-n', this.namespace, ...args], {
      encoding: 'utf8', timeout: opts.timeoutMs ?? 60000, input: opts.input,
    });
  }

  /** Stops containerd only (shims keep running), like a daemon restart. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await Promise.race([done, sleep(10000)]);
    if (p.exitCode === null && !p.signalCode) {
      p.kill('SIGKILL');
      await done;
    }
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** Processes (shims, daemons) started for this containerd: their argv names its socket. */
  shimPids(): number[] {
    return pidsMatching(this.sock);
  }

  /** Stops everything this containerd started, then containerd, then removes the temp dir. */
  async stop(): Promise<void> {
    if (this.running) {
      // (ctr waits ~10 s for a socket nobody serves, hence only while containerd runs.)
      const tasks = this.ctr(['task', 'ls', '-q']).stdout?.split('\n').filter(Boolean) ?? [];
      for (const t of tasks) {
        this.ctr(['task', 'kill', '-s', 'SIGKILL', t]);
        this.ctr(['task', 'delete', '-f', t]);
      }
      const cs = this.ctr(['container', 'ls', '-q']).stdout?.split('\n').filter(Boolean) ?? [];
      for (const c of cs) this.ctr(['container', 'delete', c]);
    }
    await this.kill();
    for (const pid of this.shimPids()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    spawnSync('umount', ['-R', this.state], { stdio: 'ignore' });
    fs.rmSync(this.state, { recursive: true, force: true });
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export function pidsMatching(needle: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.includes(needle)) out.push(Number(d));
    } catch { /* exited */ }
  }
  return out;
}

/** Processes whose environment holds `needle` (e.g. a test's KATAVOL_CONFIG=...): every daemon, warm or
 *  serving, and every shim it started inherit it, whatever their argv says. */
export function pidsWithEnv(needle: string): number[] {
  const out: number[] = [];
  const want = Buffer.from(needle + '\0');
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const env = fs.readFileSync(`/proc/${d}/environ`);
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))) continue;
      if (env.indexOf(want) === 0 || env.includes(Buffer.concat([Buffer.from([0]), want]))) out.push(Number(d));
    } catch { /* exited */ }
  }
  return out;
}

/**
 * Processes started for a containerd whose shim is katavol with `katavolConfig`: shims and daemons name the
 * containerd's socket in argv, and every katavol process (start, delete, serving daemon, warm daemon,
 * whatever its argv says) and downstream shim carries the config's KATAVOL_CONFIG in its environment.
 * Warm daemons of the pool (booting, waiting or retiring: every warm daemon but those a start claimed) are
 * left out unless `waiting`: they are meant to stay.
 */
export function startedFor(ctd: PrivateContainerd, katavolConfig: string, socketDir: string, opts: { waiting?: boolean } = {}): number[] {
  const claimed = new Set(listPool(socketDir).filter((e) => e.claimed).map((e) => e.pid));
  const inPool = (p: number): boolean => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(WARM_FLAG) && !claimed.has(p);
    } catch {
      return false; // exited
    }
  };
  const all = new Set([...ctd.shimPids(), ...pidsWithEnv(`KATAVOL_CONFIG=${katavolConfig}`)]);
  return [...all].filter((p) => p !== ctd.pid && (opts.waiting || !inPool(p)));
}

/** A busybox rootfs (static busybox, so no libraries are needed). */
export function makeRootfs(dir: string): string {
  const root = path.join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp', 'disk']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const c of ['sh', 'echo', 'cat', 'ls', 'true', 'sleep', 'mount', 'df', 'touch', 'dd', 'sync']) {
    fs.symlinkSync('busybox', path.join(root, 'bin', c));
  }
  return root;
}

export { makeExt4Image } from './disks';

/** Reads a file from an ext4 image without mounting it. */
export function debugfsCat(image: string, file: string): string {
  const r = spawnSync('debugfs', ['-R', `cat ${file}`, image], { encoding: 'utf8' });
  return r.stdout;
}

export function loopDevicesOf(file: string): string[] {
  const r = spawnSync('losetup', ['-j', file, '--noheadings', '-O', 'NAME'], { encoding: 'utf8' });
  return r.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
}

export { tmpDir } from './scratch';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
