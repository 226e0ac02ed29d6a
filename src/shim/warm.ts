// A warm daemon: a katavol daemon booted ahead of time (every module it will need loaded, no container
// state, no bundle file open, cwd /, niced) that waits in <socketDir>/.warm/w.<pid>.<start>.<gen>/ for a
// launcher to hand it a `start` (protocol: handoff.ts). It runs the start exactly as a cold start does,
// answers, and becomes that container's daemon; when the start found the pod's daemon already serving,
// it goes back to the pool instead. A daemon of another build or config is never used: it answers
// "not mine" and retires, and retires on its own within POLL_MS when it notices.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { configPath, loadConfig, type ShimConfig } from './config';
import { WARM_NICE, buildId, buildRoot, launcherRoot, listPool, poolDir, procStart, refillPool } from './pool';
import { HandoffChannel, type HandoffRequest } from './handoff';
import { sweepDeadDaemons } from './reaper';
import { CONTAINERD_OOM_ENV, adjustOomScore, parentScoreOf } from './oom';
import { failureText } from './args';

const POLL_MS = 2000;
/** A claim with no request after this long was abandoned (its launcher was killed). */
const STALE_CLAIM_MS = 30_000;
/** Overrides STALE_CLAIM_MS (tests only: a real launcher sends its request right after claiming). */
export const STALE_CLAIM_ENV = 'KATAVOL_STALE_CLAIM_MS';

export async function runWarm(self: string): Promise<void> {
  const cfg = loadConfig();
  const cfgText = readText(cfg.file);
  const build = buildId();
  const bootEnv = { ...process.env };
  const start = procStart(process.pid);
  if (cfg.warmDaemons <= 0 || !start) return process.exit(0);
  // Everything a start, the proxy and a Create need, loaded now rather than on the start path.
  require('./start'); require('./daemon'); require('./proxy'); require('./interceptor'); require('./downstream');
  require('./pod-channel'); require('../backends'); require('../backends/runc'); require('../backends/runtime-rs/backend');
  require('winston');
  process.chdir('/');
  process.on('SIGPIPE', () => undefined);
  // A serving daemon's OOM score from the start (containerd's + 1, handed down by whoever refilled the
  // pool; a claim sets it again from the claiming containerd's), like its heap cap (see refillPool).
  adjustOomScore(bootEnv[CONTAINERD_OOM_ENV], SILENT);
  // In the directory our first hand-off directory is built in (swept as ours should we die here).
  await rehearse(cfg, path.join(poolDir(cfg.socketDir), `.w.${process.pid}.${start}.0.${process.pid}.new`));
  // Until it serves, a warm daemon has nothing to keep: any surprise ends it (a later start refills).
  process.on('uncaughtException', bail);
  process.on('unhandledRejection', bail);

  let gen = 0;
  for (;;) {
    const outcome = await waitForClaim(cfg, cfgText, build, path.join(poolDir(cfg.socketDir), `w.${process.pid}.${start}.${gen++}`), self);
    if (outcome === 'retire') return process.exit(0);
    if (outcome === 'serving') return;
    // 'again': back to the pool as it booted (a pod's later container found its daemon serving).
    replaceEnv(bootEnv);
    process.chdir('/');
    try { os.setPriority(WARM_NICE); } catch { /* keep going */ }
  }
}

type Outcome = 'serving' | 'again' | 'retire';

function waitForClaim(cfg: ShimConfig, cfgText: string | undefined, build: string, dir: string, self: string): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    let ch!: HandoffChannel;
    let claimedSince = 0;
    let done = false;
    const finish = (o: Outcome, remove: boolean): void => {
      if (done) return;
      done = true;
      clearInterval(poll);
      process.removeListener('SIGTERM', onTerm);
      if (remove) ch.remove(); else ch.close();
      resolve(o);
    };
    const onTerm = (): void => { if (ch.selfClaim()) finish('retire', true); };
    try {
      ch = HandoffChannel.open(dir, (r) => { clearInterval(poll); void serve(r).then((o) => finish(o, o !== 'serving')); });
    } catch {
      return resolve('retire');
    }
    process.on('SIGTERM', onTerm);
    // Announce ourselves only now: the boot marker goes once the directory is claimable.
    for (const e of listPool(cfg.socketDir)) if (e.kind === 'booting' && e.pid === process.pid && e.name.startsWith('b.')) fs.rmSync(e.path, { force: true });

    let sweeping = false;
    const staleMs = Number(process.env[STALE_CLAIM_ENV]) > 0 ? Number(process.env[STALE_CLAIM_ENV]) : STALE_CLAIM_MS;
    const poll = setInterval(() => {
      if (!fs.existsSync(dir)) return finish('retire', false);
      // While waiting: stop the downstreams of daemons and starts that died unseen (reaper.ts), so they
      // go even when no start or delete comes after the crash.
      if (!sweeping && !ch.claimed) {
        sweeping = true;
        void sweepDeadDaemons(cfg.socketDir).finally(() => { sweeping = false; });
      }
      if (ch.claimed) {
        // Claimed but no request yet: only an abandoned claim stays like this.
        claimedSince ||= Date.now();
        if (Date.now() - claimedSince > staleMs) finish('again', true);
        return;
      }
      if (buildId() !== build || readText(cfg.file) !== cfgText) {
        if (ch.selfClaim()) finish('retire', true);
        return;
      }
      // A surplus left by racing refills: the daemons agree on the order, so exactly the extra ones go.
      const warm = listPool(cfg.socketDir).filter((e) => e.kind === 'warm' && e.alive && !e.claimed);
      const rank = warm.findIndex((e) => e.path === dir);
      if (rank >= cfg.warmDaemons && ch.selfClaim()) finish('retire', true);
    }, Math.min(POLL_MS, staleMs));

    const refuse = (o: Outcome): Outcome => {
      ch.answer('R');
      return o;
    };

    const serve = async (r: HandoffRequest): Promise<Outcome> => {
      // A start waits on us: full priority at once (we waited at WARM_NICE; 'again' niceness is restored).
      try { os.setPriority(0); } catch { /* stays niced */ }
      // Where the start's time goes, step by step (ms), for the 'serving' log line.
      const steps: Record<string, number> = {};
      let last = process.hrtime.bigint();
      const mark = (step: string): void => {
        const now = process.hrtime.bigint();
        steps[step] = Math.round(Number(now - last) / 1e4) / 100;
        last = now;
      };
      // Not ours to serve: another build's launcher, or a start with another config file.
      const root = launcherRoot(r.pid, r.launcher);
      if (root === undefined) return refuse('again'); // gone already, or a path we cannot follow
      if (root !== buildRoot() || buildId() !== build) return refuse('retire');
      const env = ch.environ(r.pid);
      if (!env || configPath(env) !== cfg.file) return refuse('again');
      if (readText(cfg.file) !== cfgText) return refuse('retire');
      const got = await ch.inputs(r.pid, env);
      if (!got) return refuse('again'); // cwd or stdin unreadable (before anything was read from it)
      const oomScore = parentScoreOf(r.pid); // containerd's, read while its child (the launcher) waits
      mark('inputs');
      replaceEnv(got.env);
      process.chdir(got.cwd);

      const { parseShimArgs } = await import('./args');
      const { start } = await import('./start');
      let args;
      try {
        args = parseShimArgs(r.argv);
        if (args.action !== 'start') throw new Error(`a warm daemon only serves start, not ${JSON.stringify(args.action)}`);
      } catch (e) {
        ch.answer('1', failureText(e));
        return 'retire';
      }
      let started;
      try {
        started = await start(args, self, true, { stdin: got.stdin, mark });
      } catch (e) {
        ch.answer('1', failureText(e));
        // This process may hold what the failed start made (a bound socket): a fresh one takes its place.
        refillPool(cfg);
        return 'retire';
      }
      ch.answer('0', started.answer);
      mark('answer');
      if (!started.serve) return 'again';
      ch.remove();
      process.removeListener('uncaughtException', bail);
      process.removeListener('unhandledRejection', bail);
      process.env[CONTAINERD_OOM_ENV] = oomScore;
      const { runDaemon } = await import('./daemon');
      runDaemon(args, started.serve, { startStepsMs: steps }).catch(() => process.exit(1));
      // Off the critical path: the answer is out; the replacement boots niced.
      setImmediate(() => { try { refillPool(cfg); } catch { /* a later start refills */ } });
      return 'serving';
    };
  });
}

const SILENT = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/**
 * Runs once, with harmless inputs, what a start runs first: V8 compiles a function on its first call,
 * so this compiling happens while we wait, not on the claiming start's path (spawnSync, a socket bind,
 * the address hash, the bundle writes, the bootstrap parse and answer, the async read, the argv parse).
 * `scratch` is ours alone and removed after; a failure of any part only means that part stays uncompiled.
 */
async function rehearse(cfg: ShimConfig, scratch: string): Promise<void> {
  const { spawnSync } = await import('child_process');
  const { ourAddress, containerdEnv } = await import('./start');
  const { writeState, readPidFile, socketPath } = await import('./state');
  const { parseBootstrap, answerBootstrap } = await import('./bootstrap');
  const { parseShimArgs } = await import('./args');
  const { writeFileAtomic } = await import('../volumes/files');
  const net = await import('net');
  const steps: Array<() => unknown> = [
    () => parseShimArgs(['-namespace', 'rehearsal', '-address', '/rehearsal', '-publish-binary', '/rehearsal', '-id', 'rehearsal', 'start']),
    () => spawnSync('true', [], { cwd: '/', env: containerdEnv(process.env), input: Buffer.alloc(0), maxBuffer: 1 << 20 }),
    () => answerBootstrap(parseBootstrap(Buffer.from(ourAddress(cfg.socketDir, 'unix:///rehearsal')), cfg.downstream), 'unix:///rehearsal'),
    () => fs.promises.readFile('/proc/self/stat'),
    () => fs.readlinkSync('/proc/self/cwd'),
    () => {
      writeState(scratch, { address: 'unix:///rehearsal', downstreamAddress: 'unix:///rehearsal', downstream: cfg.downstream, backend: cfg.backend });
      writeFileAtomic(path.join(scratch, 'address'), 'unix:///rehearsal', { mode: 0o644, durable: false });
      return readPidFile(path.join(scratch, 'address'));
    },
    () => new Promise<void>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve());
      srv.listen(socketPath(`unix://${path.join(scratch, 's')}`), () => srv.close(() => resolve()));
    }),
  ];
  try {
    fs.mkdirSync(scratch, { mode: 0o700 });
    for (const step of steps) {
      try { await step(); } catch { /* that part only */ }
    }
  } catch { /* no scratch: nothing rehearsed */ }
  fs.rmSync(scratch, { recursive: true, force: true });
}

function bail(): void {
  process.exit(1);
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
