// A warm daemon: a katavol daemon booted ahead of time (every module it will need loaded, no container
// state, no bundle file open, cwd /) that waits in <socketDir>/.warm/w.<pid>.<start>.<gen>/ for a launcher
// to hand it a `start`. The hand-off, all of it doable by the launcher in sh without Node:
//   1. claim: create <dir>/claim with O_EXCL (sh: `set -C`); the loser tries the next daemon or goes cold
//   2. open <dir>/ans for reading (this daemon holds its write end, so the launcher sees EOF if we die)
//   3. write "<launcher pid>\0<build root>\0<argc>\0<argv...>\0" into the <dir>/req fifo
//   4. we read the launcher's environment, cwd and stdin through /proc/<pid> (stdin from <dir>/stdin.in
//      when it is a socket, which /proc cannot reopen: the launcher copies it), run the downstream start
//      exactly as a cold start does, and answer on ans: "<exit status>\n" then the bytes for stdout
//      (status 0) or stderr (status 1); "R\n" means "not for you" (other build or config): try another daemon.
// A daemon of another build or config is never used: it answers R and retires, and retires on its own
// within POLL_MS when it notices.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { configPath, loadConfig, type ShimConfig } from './config';
import { WARM_NICE, buildId, buildRoot, listPool, poolDir, procStart, refillPool, type PoolEntry } from './pool';

const POLL_MS = 2000;
/** A claim with no request after this long was abandoned (its launcher was killed). */
const STALE_CLAIM_MS = 30_000;

export async function runWarm(self: string): Promise<void> {
  const cfg = loadConfig();
  const cfgText = readText(cfg.file);
  const build = buildId();
  const bootEnv = { ...process.env };
  const start = procStart(process.pid);
  if (cfg.warmDaemons <= 0 || !start) return process.exit(0);
  // Everything a start, the proxy and a Create need, loaded now rather than on the start path.
  require('./start'); require('./daemon'); require('./proxy'); require('./interceptor'); require('./downstream');
  require('../backends'); require('../backends/runc'); require('../backends/runtime-rs/backend');
  require('winston');
  process.chdir('/');
  process.on('SIGPIPE', () => undefined);
  // Until it serves, a warm daemon has nothing to keep: any surprise ends it (a later start refills).
  process.on('uncaughtException', bail);
  process.on('unhandledRejection', bail);

  const dir = poolDir(cfg.socketDir);
  let gen = 0;
  for (;;) {
    const outcome = await waitForClaim(cfg, cfgText, build, dir, `w.${process.pid}.${start}.${gen++}`, self);
    if (outcome === 'retire') return process.exit(0);
    if (outcome === 'serving') return;
    // 'again': back to the pool as it booted (a pod's second container found its daemon already serving).
    replaceEnv(bootEnv);
    process.chdir('/');
    try { os.setPriority(WARM_NICE); } catch { /* keep going */ }
  }
}

type Outcome = 'serving' | 'again' | 'retire';

function waitForClaim(cfg: ShimConfig, cfgText: string | undefined, build: string, pool: string, name: string, self: string): Promise<Outcome> {
  const dir = path.join(pool, name);
  const req = path.join(dir, 'req');
  const ans = path.join(dir, 'ans');
  // Made under a name no launcher looks at, then renamed: a claimable directory always has its fifos.
  const building = path.join(pool, `.${name}`);
  fs.mkdirSync(building, { mode: 0o700 });
  const mk = spawnSync('mkfifo', ['-m', '0600', path.join(building, 'req'), path.join(building, 'ans')]);
  if (mk.status !== 0) {
    fs.rmSync(building, { recursive: true, force: true });
    return Promise.resolve('retire');
  }
  // O_RDWR: opening never blocks, and we never see EOF on req while waiting.
  const reqFd = fs.openSync(path.join(building, 'req'), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  let ansFd: number | undefined = fs.openSync(path.join(building, 'ans'), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  fs.renameSync(building, dir);
  // Announce ourselves only now: the boot marker goes once the directory is usable.
  for (const e of listPool(cfg.socketDir)) if (e.kind === 'booting' && e.pid === process.pid) fs.rmSync(e.path, { force: true });

  return new Promise<Outcome>((resolve) => {
    const reqStream = new net.Socket({ fd: reqFd, readable: true, writable: false });
    let buf = Buffer.alloc(0);
    let claimedSince = 0;
    let done = false;
    const finish = (o: Outcome, removeDir: boolean): void => {
      if (done) return;
      done = true;
      clearInterval(poll);
      process.removeListener('SIGTERM', onTerm);
      reqStream.destroy();
      closeAns();
      if (removeDir) fs.rmSync(dir, { recursive: true, force: true });
      resolve(o);
    };
    const selfClaim = (): boolean => {
      try { fs.closeSync(fs.openSync(path.join(dir, 'claim'), 'wx', 0o600)); return true; } catch { return false; }
    };
    const onTerm = (): void => { if (selfClaim()) finish('retire', true); };
    process.on('SIGTERM', onTerm);

    const poll = setInterval(() => {
      if (!fs.existsSync(dir)) return finish('retire', false);
      if (fs.existsSync(path.join(dir, 'claim'))) {
        // Claimed but no request yet: only an abandoned claim stays like this.
        claimedSince ||= Date.now();
        if (Date.now() - claimedSince > STALE_CLAIM_MS) finish('again', true);
        return;
      }
      if (buildId() !== build || readText(cfg.file) !== cfgText) {
        if (selfClaim()) finish('retire', true);
        return;
      }
      // A surplus left by racing refills: the daemons agree on the order, so exactly the extra ones go.
      const warm = listPool(cfg.socketDir).filter((e: PoolEntry) => e.kind === 'warm' && e.alive && !e.claimed);
      const rank = warm.findIndex((e) => e.name === name);
      if (rank >= cfg.warmDaemons && selfClaim()) finish('retire', true);
    }, POLL_MS);

    reqStream.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const fields = splitNul(buf);
      if (fields.length < 3 || fields.length < 3 + Number(fields[2])) return;
      clearInterval(poll);
      reqStream.pause();
      const [pid, root, argc] = fields;
      void serveClaim(Number(pid), root, fields.slice(3, 3 + Number(argc))).then((o) => finish(o, o !== 'serving'));
    });

    const closeAns = (): void => {
      if (ansFd !== undefined) fs.closeSync(ansFd);
      ansFd = undefined;
    };
    const answer = (status: string, payload: Buffer | string): void => {
      if (ansFd === undefined) return;
      const data = Buffer.concat([Buffer.from(`${status}\n`), Buffer.from(payload)]);
      // The launcher reads as we write; a full pipe (EAGAIN) only means it has not caught up yet.
      for (let off = 0, tries = 0; off < data.length && tries < 2000;) {
        try {
          off += fs.writeSync(ansFd, data, off);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') break;
          tries++;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        }
      }
      closeAns(); // EOF for the launcher
    };

    const refuse = (o: Outcome): Outcome => {
      answer('R', '');
      return o;
    };

    const serveClaim = async (pid: number, root: string, argv: string[]): Promise<Outcome> => {
      // Not ours to serve: another build's launcher, or a start with another config file.
      if (root !== buildRoot() || buildId() !== build) return refuse('retire');
      const env = readEnviron(pid);
      if (!env || configPath(env) !== cfg.file) return refuse('again');
      if (readText(cfg.file) !== cfgText) return refuse('retire');
      let cwd: string;
      let stdin: Buffer;
      try {
        cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
        const given = path.join(dir, 'stdin.in'); // the launcher's copy when its stdin is a socket
        stdin = fs.readFileSync(fs.existsSync(given) ? given : `/proc/${pid}/fd/0`);
      } catch {
        return refuse('again'); // e.g. stdin is a socket: the launcher goes cold with it intact
      }
      // Kept for the launcher, which goes cold with it should this process die before answering.
      try { fs.writeFileSync(path.join(dir, 'stdin'), stdin, { mode: 0o600 }); } catch { /* best effort */ }
      replaceEnv(env);
      process.chdir(cwd);
      try { os.setPriority(0); } catch { /* stays niced */ }

      const { parseArgs } = await import('./args');
      const { start } = await import('./start');
      let args;
      try {
        args = parseArgs(argv);
        if (args.action !== 'start') throw new Error(`a warm daemon only serves start, not ${JSON.stringify(args.action)}`);
      } catch (e) {
        answer('1', `containerd-shim-katavol-v2: ${(e as Error).message}`);
        return 'retire';
      }
      let r;
      try {
        r = await start(args, self, true, stdin);
      } catch (e) {
        answer('1', `containerd-shim-katavol-v2: ${(e as Error)?.message ?? String(e)}`);
        // This process may hold what the failed start made (a bound socket): a fresh one takes its place.
        refillPool(cfg);
        return 'retire';
      }
      answer('0', r.answer);
      if (!r.serve) return 'again';
      fs.rmSync(dir, { recursive: true, force: true });
      process.removeListener('uncaughtException', bail);
      process.removeListener('unhandledRejection', bail);
      const { runDaemon } = await import('./daemon');
      runDaemon(args, r.serve, true).catch(() => process.exit(1));
      // Off the critical path: the answer is out; the replacement boots niced.
      setImmediate(() => { try { refillPool(cfg); } catch { /* a later start refills */ } });
      return 'serving';
    };
  });
}

function bail(): void {
  process.exit(1);
}

function splitNul(buf: Buffer): string[] {
  const out: string[] = [];
  let from = 0;
  for (let i = buf.indexOf(0); i >= 0; i = buf.indexOf(0, from)) {
    out.push(buf.subarray(from, i).toString());
    from = i + 1;
  }
  return out;
}

function readEnviron(pid: number): NodeJS.ProcessEnv | undefined {
  try {
    const env: NodeJS.ProcessEnv = {};
    for (const kv of splitNul(fs.readFileSync(`/proc/${pid}/environ`))) {
      const eq = kv.indexOf('=');
      if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return env;
  } catch {
    return undefined;
  }
}

function replaceEnv(env: NodeJS.ProcessEnv): void {
  for (const k of Object.keys(process.env)) if (!(k in env)) delete process.env[k];
  Object.assign(process.env, env);
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
