// Churn through a private containerd, the katavol shim and the runc backend: N containers, P at a time,
// mixing no volume, a read-write directvol on its own image, a read-only volume shared by many, and pods
// of two containers on one shim. Every writer's token is read back from its image with debugfs, every
// image passes e2fsck -fn, and nothing the run made may be left: no process, loop device, socket,
// sandbox record, container or task. `make soak` prints the figures; the test suite runs a small one.
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync, type SpawnSyncReturns } from 'child_process';
import { PrivateContainerd, SHIM, debugfsCat, makeExt4Image, makeRootfs, sleep, startedFor, tmpDir } from './containerd';
import { loopsBackedBy } from './disks';
import { Registry } from '../../src/volumes/registry';
import { STARTS_DIR } from '../../src/shim/reaper';
import { stopPool } from '../../src/shim/pool';
import { encodeVolumePath } from '../../src/volumes/encoding';
import { TEMP_PREFIX } from '../../src/volumes/files';

export type Kind = 'none' | 'rw' | 'ro' | 'pod';
export const KINDS: readonly Kind[] = ['none', 'rw', 'ro', 'pod'];

/**
 * Injected once the churn is a third done (kill-* repeat through the rest of it):
 *   containerd-sigterm/-sigkill  containerd restarted while containers start and stop
 *   start-in-flight              containerd stopped 150-300 ms into a `ctr run`, then restarted
 *   kill-daemons/-downstreams    random katavol daemons (and starts, deletes) / runc shims SIGKILLed
 *   hang-create                  the runc shim of a container SIGSTOPped before Create reaches it: `ctr --timeout 10s`
 *                                gives up with "ctr: context deadline exceeded"; the shim then gets SIGCONT or SIGKILL
 *   enospc                       socketDir and the volume root on a small tmpfs, filled: `direct-volume add` and
 *                                `ctr run` fail saying "no space left on device", the registry keeps no trace of the add
 *   image-gone                   a running container's image deleted, or its loop device detached by someone else;
 *                                then kill, task delete and container delete must all succeed and release everything
 */
export type Fault = 'containerd-sigterm' | 'containerd-sigkill' | 'start-in-flight' | 'kill-daemons' | 'kill-downstreams' | 'hang-create' | 'enospc' | 'image-gone';
export const FAULTS: readonly Fault[] = ['containerd-sigterm', 'containerd-sigkill', 'start-in-flight', 'kill-daemons', 'kill-downstreams', 'hang-create', 'enospc', 'image-gone'];

/** What ctr prints when its `--timeout` ends a call that a stopped shim never answers (containerd 1.6 sets no deadline of its own on Create). */
export const HANG_ERROR = /^ctr: context deadline exceeded\n$/;
/** Every failure while the filesystem of socketDir and the volume root is full names the cause. */
export const ENOSPC_ERROR = /no space left on device/i;

/** What ctr prints when the daemon, shim or containerd it talks to went away mid-call (runc exits 137 when
 *  the runc shim that runs it is SIGKILLed: go-runc gives it SIGKILL as its parent-death signal). */
export const FAULT_ERRORS = /no space left on device|context deadline exceeded|ttrpc: closed|failed to dial|error while dialing|transport is closing|connection closed: unavailable|connection refused|connection reset|Unavailable|error reading from server: EOF|context canceled|shim disconnected|no such file or directory|failed to (start|create) shim|task .* not found|exit status 1: |not found|runc did not terminate successfully: exit status 137/;

/**
 * containerd 1.6's ctr (`ctr run`, `ctr task exec`) now and then prints nothing at all for a process that
 * ran and exited 0, at load 20-25 on 2 cores: 3 in 1,500 fast execs through containerd's own runc shim and
 * 11 in 1,500 through katavol, side by side; the command's effects are there (a file it wrote is on the
 * image). Likely cause (containerd/fifo openFifo): ctr cancels its stdout FIFO's open, after the process
 * exited, while the open has returned in the kernel but its goroutine has not yet marked it opened; the
 * opened FIFO is then closed unread.
 */
export const LOST_OUTPUT = 'containerd 1.6 ctr output loss under load, seen with containerd\'s own runc shim too';

/** A failure during a fault that is one of those: a run that exited 0 with the wrong output never is. */
export function explainedFailure(failure: string): boolean {
  return !failure.includes(': unexpected output ') && FAULT_ERRORS.test(failure);
}

export interface SoakOptions {
  containers: number;
  parallel: number;
  fault?: Fault;
  /** The shim config's warmDaemons (default: the config's own default, 1, as a node left as installed). */
  warmDaemons?: number;
  /** Progress lines (make soak prints them; the test stays quiet). */
  log?: (line: string) => void;
}

export interface SoakResult {
  containers: number;
  seconds: number;
  perSecond: number;
  /** ctr run until the container's first line of output, in ms. */
  p50Ms: number;
  p99Ms: number;
  peakDaemonRssKiB: number;
  tokensChecked: number;
  imagesChecked: number;
  byKind: Record<Kind, number>;
  /** Runs that failed while a fault was injected, with what ctr printed (judged by the caller). */
  faultFailures: string[];
  /** How often the fault was injected, and the containers a user had to clean up afterwards. */
  faultsInjected: number;
  userCleaned: number;
  /** Daemons that began serving (one per start that made a daemon), and how many were warm daemons from the pool. */
  daemons: number;
  fromPool: number;
  /** Runs that exited 0 but whose output ctr lost entirely (LOST_OUTPUT): counted, not failed. */
  outputLost: string[];
  /** Every problem found; empty means the soak passed. */
  problems: string[];
}

interface Run {
  status: number;
  stdout: string;
  stderr: string;
  /** ms from spawn to the first stdout byte (the container ran), or -1. */
  firstOutputMs: number;
  /** When ctr was started, and how long it ran (ms), for matching a failure with containerd's log. */
  startedAt: number;
  ms: number;
}

const SHARED_VOLUME = '/soak/shared';
const SHARED_TEXT = 'shared-read-only-content';

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const log = opts.log ?? (() => undefined);
  const work = tmpDir('katavol-soak-');
  // enospc: socketDir and the volume root share a small tmpfs that the fault fills.
  const small = opts.fault === 'enospc' ? fs.mkdtempSync('/tmp/kvsoak-') : undefined;
  if (small) {
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0711', 'katavol-soak', small], { encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`mount tmpfs on ${small}: ${m.stderr}`);
    fs.mkdirSync(path.join(small, 's'));
  }
  const sockDir = small ? path.join(small, 's') : fs.mkdtempSync('/tmp/kvsoak-');
  const volRoot = small ? path.join(small, 'volumes') : path.join(work, 'volumes');
  const config = path.join(work, 'katavol.json');
  // hang-create: the downstream is the runc shim behind a script that SIGSTOPs the shim it started for
  // an id marked in <work>/stop-<id>, before containerd's Create can reach it.
  const downstream = opts.fault === 'hang-create' ? stoppingDownstream(work) : '/usr/bin/containerd-shim-runc-v2';
  fs.writeFileSync(config, JSON.stringify({ backend: 'runc', downstream, socketDir: sockDir, ...(opts.warmDaemons === undefined ? {} : { warmDaemons: opts.warmDaemons }) }));
  const rootfs = makeRootfs(work);
  const env = { ...process.env, KATAVOL_VOLUME_ROOT: volRoot, KATAVOL_CONFIG: config };
  const katavol = (...args: string[]) => spawnSync(path.join(__dirname, '..', '..', '..', 'bin', 'katavol'), args, { encoding: 'utf8', env });
  const problems: string[] = [];
  const faultFailures: string[] = [];
  const outputLost: string[] = [];
  const images: string[] = [];
  const volumes: string[] = [];
  const tokens = new Map<string, string>(); // image -> token written into /token

  // The shared read-only volume, with its content put in by mke2fs -d.
  const seed = path.join(work, 'seed');
  fs.mkdirSync(seed);
  fs.writeFileSync(path.join(seed, 'hello'), SHARED_TEXT);
  const sharedImg = path.join(work, 'shared.img');
  fs.writeFileSync(sharedImg, '');
  fs.truncateSync(sharedImg, 8 << 20);
  const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-d', seed, sharedImg], { encoding: 'utf8' });
  if (mk.status !== 0) throw new Error(`mkfs.ext4 -d: ${mk.stderr}`);
  images.push(sharedImg);
  let diskFull = false;
  /** False when the add failed because the fault filled the registry's filesystem (a fault failure, not a problem). */
  const register = (vol: string, device: string): boolean => {
    const r = katavol('direct-volume', 'add', vol, JSON.stringify({ 'volume-type': 'directvol', device, fstype: 'ext4' }));
    if (r.status !== 0 && diskFull && ENOSPC_ERROR.test(r.stderr)) {
      faultFailures.push(`${vol}: direct-volume add exited ${r.status}: ${r.stderr.trim().slice(0, 400)}`);
      return false;
    }
    if (r.status !== 0) throw new Error(`direct-volume add ${vol}: ${r.stderr}`);
    volumes.push(vol);
    return true;
  };
  register(SHARED_VOLUME, sharedImg);

  // A short orphan timeout, so a daemon whose start containerd lost is gone before the leak checks.
  const ctd = await PrivateContainerd.start({ env: { KATAVOL_CONFIG: config, KATAVOL_VOLUME_ROOT: volRoot, KATAVOL_ORPHAN_TIMEOUT_MS: '4000' } });
  const ctrArgs = (args: string[]) => ['-a', ctd.sock, '-n', ctd.namespace, ...args];
  /**
   * A ctr call of the soak's own (exec, kill, delete, ls) that cannot hang it: one that has not returned
   * within CTR_SYNC_TIMEOUT_MS is killed, is a problem, and leaves beside the images who held which of
   * this run's sockets and what each of our processes was doing (hang-N.txt).
   */
  let hangs = 0;
  const ctrSync = (args: string[]): SpawnSyncReturns<string> => {
    const r = spawnSync('ctr', ctrArgs(args), { encoding: 'utf8', timeout: CTR_SYNC_TIMEOUT_MS, killSignal: 'SIGKILL' });
    if (r.error && 'code' in r.error && r.error.code === 'ETIMEDOUT') {
      const file = path.join(work, `hang-${++hangs}.txt`);
      fs.writeFileSync(file, hangReport(args, [...ours(true), ctd.pid ?? 0], sockDir));
      problems.push(`ctr ${args.join(' ')} had not returned after ${CTR_SYNC_TIMEOUT_MS / 1000} s (killed); sockets and processes at that moment: ${file}`);
    }
    return r;
  };
  const ctrRun = (args: string[], global: string[] = []): Promise<Run> => new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const startedAt = Date.now();
    const p = spawn('ctr', [...global, ...ctrArgs(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let first = -1;
    p.stdout.on('data', (d: Buffer) => {
      if (first < 0) first = Number(process.hrtime.bigint() - t0) / 1e6;
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      const file = path.join(work, `hang-${++hangs}.txt`);
      fs.writeFileSync(file, hangReport(args, [...ours(true), ctd.pid ?? 0], sockDir));
      stderr += `(the soak killed this ctr after 120 s; sockets and processes at that moment: ${file})`;
      p.kill('SIGKILL');
    }, 120000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr, firstOutputMs: first, startedAt, ms: Date.now() - startedAt });
    });
  });
  const run = (id: string, cmd: string, mounts: string[] = [], extra: string[] = []) =>
    ctrRun(['run', '--rm', '--runtime', SHIM, ...mounts.flatMap((m) => ['--mount', m]), ...extra, '--rootfs', rootfs, id, '/bin/sh', '-c', cmd]);

  /** This run's katavol processes and downstream shims, found by their environment (KATAVOL_CONFIG): warm
   *  daemons, whose argv names no containerd, included; those still waiting in the pool only if `waiting`. */
  const ours = (waiting = false): number[] => startedFor(ctd, config, sockDir, { waiting });
  // Peak RSS of katavol processes (daemons, warm or serving, and starts and deletes).
  let peakRss = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const pid of ours(true)) {
        try {
          if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('shim/bin.js')) continue;
          const kb = Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
          peakRss = Math.max(peakRss, kb);
        } catch { /* exited */ }
      }
      await sleep(250);
    }
  })();

  const latencies: number[] = [];
  const byKind: Record<Kind, number> = { none: 0, rw: 0, ro: 0, pod: 0 };
  let faultActive = false;
  /**
   * True when the run succeeded with the expected output, or succeeded (exit 0) with nothing at all on
   * ctr's stdout: containerd 1.6's ctr loses a fast process's whole output now and then under load, with
   * containerd's own runc shim as with ours (see LOST_OUTPUT); the command did run (its exit status is
   * the runc shim's), such a run is counted apart, and a writer's token is still checked on its image.
   * A failure during a fault is noted, not a problem.
   */
  const expectOk = (id: string, r: Run, out: RegExp): boolean => {
    if (r.firstOutputMs >= 0) latencies.push(r.firstOutputMs);
    if (r.status === 0 && out.test(r.stdout)) return true;
    if (r.status === 0 && r.stdout === '' && r.stderr === '') {
      outputLost.push(`${id} (ctr run exited 0 after ${r.ms} ms, started ${new Date(r.startedAt).toISOString()})`);
      return true;
    }
    const what = r.status !== 0 ? `${id}: ctr run exited ${r.status}: ${r.stderr.trim().slice(0, 400)}`
      : `${id}: unexpected output ${JSON.stringify(r.stdout.slice(0, 200))} (ctr run exited 0 after ${r.ms} ms, started ${new Date(r.startedAt).toISOString()}; stderr ${JSON.stringify(r.stderr.slice(0, 200))})`;
    (faultActive ? faultFailures : problems).push(what);
    return false;
  };
  const newImage = (name: string): string => {
    const img = path.join(work, `${name}.img`);
    makeExt4Image(img, 8);
    images.push(img);
    return img;
  };

  const one = async (i: number): Promise<void> => {
    const kind = KINDS[i % KINDS.length];
    const id = `soak${i}-${kind}`;
    byKind[kind]++;
    if (kind === 'none') {
      expectOk(id, await run(id, 'echo started'), /^started\n$/);
    } else if (kind === 'ro') {
      expectOk(id, await run(id, 'echo started; cat /disk/hello', [`type=directvol,src=${SHARED_VOLUME},dst=/disk,options=rbind:ro`]), new RegExp(`^started\\n${SHARED_TEXT}$`));
    } else if (kind === 'rw') {
      const img = newImage(id);
      const token = `token-${id}-${process.pid}`;
      if (!register(`/soak/${id}`, img)) return;
      const ok = expectOk(id, await run(id, `echo started; echo ${token} > /disk/token && sync && cat /disk/token`, [`type=directvol,src=/soak/${id},dst=/disk,options=rbind:rw`]), new RegExp(`^started\\n${token}\\n$`));
      // A run a fault cut short may not have written it; one that printed it back must have it on disk.
      if (ok) tokens.set(img, token);
    } else {
      // A pod: two containers on one runc shim (grouped by the sandbox annotation), so on one katavol
      // daemon; the first writes its own image and outlives the second, which reads the shared volume.
      const img = newImage(`${id}-a`);
      const token = `token-${id}-${process.pid}`;
      if (!register(`/soak/${id}`, img)) return;
      const pod = ['--annotation', `io.kubernetes.cri.sandbox-id=${id}`];
      const first = run(`${id}-a`, `echo started; echo ${token} > /disk/token && sync; i=0; while [ ! -e /disk/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; cat /disk/token`,
        [`type=directvol,src=/soak/${id},dst=/disk,options=rbind:rw`], pod);
      // The second starts once the first is running (its bundle's shim is up), then lets it finish.
      for (let k = 0; k < 600 && !fs.existsSync(path.join(ctd.bundleOf(`${id}-a`), 'init.pid')); k++) await sleep(50);
      const second = await run(`${id}-b`, 'echo started; cat /disk/hello', [`type=directvol,src=${SHARED_VOLUME},dst=/disk,options=rbind:ro`], pod);
      expectOk(`${id}-b`, second, new RegExp(`^started\\n${SHARED_TEXT}$`));
      // The first waits for a flag in its volume: exec the touch through the proxy, as a user would.
      const ex = ctrSync(['task', 'exec', '--exec-id', 'go', `${id}-a`, '/bin/touch', '/disk/go']);
      if (ex.status !== 0) {
        (faultActive ? faultFailures : problems).push(`${id}-a: exec failed: ${ex.stderr.trim()}`);
        ctrSync(['task', 'kill', '-s', 'SIGKILL', `${id}-a`]); // rather than wait out its 30 s
      }
      if (expectOk(`${id}-a`, await first, new RegExp(`^started\\n${token}\\n$`))) tokens.set(img, token);
    }
  };

  const t0 = Date.now();
  let next = 0;
  let done = 0;
  const workers = Array.from({ length: opts.parallel }, async () => {
    while (next < opts.containers) {
      const i = next++;
      await one(i).catch((e) => problems.push(`container ${i}: ${(e as Error).stack ?? e}`));
      done++;
      if (done % 50 === 0) log(`soak: ${done}/${opts.containers} containers, ${problems.length} problems`);
    }
  });
  let faultsInjected = 0;
  let userCleaned = 0;
  const goneImages: string[] = [];
  const daemonPids = (needle: string) => ours(true).filter((p) => safeCmdline(p).includes(needle));
  const injector = (async () => {
    if (!opts.fault) return;
    const third = Math.floor(opts.containers / 3);
    while (done < third && next < opts.containers) await sleep(100);
    faultActive = true;
    const f = opts.fault;
    if (f === 'containerd-sigterm' || f === 'containerd-sigkill') {
      log(`soak: restarting containerd with ${f === 'containerd-sigterm' ? 'SIGTERM' : 'SIGKILL'} while containers start and stop`);
      await ctd.kill(f === 'containerd-sigterm' ? 'SIGTERM' : 'SIGKILL');
      await ctd.launch();
      faultsInjected++;
    } else if (f === 'start-in-flight') {
      // A start containerd forgets: ctr run, then containerd is stopped 150-300 ms later and restarted.
      for (let k = 0; k < 3; k++) {
        const id = `inflight${k}`;
        const pending = run(id, 'echo started; sleep 2');
        await sleep(150 + Math.floor(Math.random() * 150));
        log(`soak: SIGTERM to containerd while ${id} starts`);
        await ctd.kill('SIGTERM');
        await ctd.launch();
        faultsInjected++;
        const r = await pending;
        if (r.status !== 0) faultFailures.push(`${id}: ctr run exited ${r.status}: ${r.stderr.trim().slice(0, 400)}`);
      }
    } else if (f === 'hang-create') {
      // A runc shim stopped before Create: ctr's own deadline ends the wait; then the shim is continued
      // (even k) or killed (odd k). Either way nothing may be left, and the churn goes on meanwhile.
      for (let k = 0; k < Math.max(2, Math.floor(opts.containers / 50)); k++) {
        const id = `hang${k}`;
        fs.writeFileSync(path.join(work, `stop-${id}`), '');
        log(`soak: ${id}: its runc shim is SIGSTOPped before Create; ctr --timeout 10s`);
        const r = await ctrRun(['run', '--rm', '--runtime', SHIM, '--rootfs', rootfs, id, '/bin/sh', '-c', 'echo started'], ['--timeout', '10s']);
        faultsInjected++;
        if (!HANG_ERROR.test(r.stderr) || r.status === 0) problems.push(`${id}: expected ctr to fail with "ctr: context deadline exceeded", got exit ${r.status}: ${JSON.stringify(r.stderr.slice(0, 300))}`);
        else faultFailures.push(`${id}: ctr run exited ${r.status}: ${r.stderr.trim()}`);
        let pid = NaN;
        try { pid = Number(fs.readFileSync(path.join(work, `stopped-${id}`), 'utf8')); } catch { /* not stopped */ }
        if (!(pid > 0)) {
          problems.push(`${id}: its runc shim was never stopped (the fault did not happen)`);
          continue;
        }
        try { process.kill(pid, k % 2 === 0 ? 'SIGCONT' : 'SIGKILL'); } catch { /* already reaped */ }
        if (ctrSync(['container', 'delete', id]).status === 0) userCleaned++; // what ctr run --rm could not
      }
    } else if (f === 'enospc') {
      // Fill the tmpfs of socketDir and the volume root and keep it full (the churn frees space as it
      // goes), try what a user would, then free it. A try that found a page just freed may succeed
      // whole; at least one of each must meet the full disk.
      const filler = path.join(small!, 'filler');
      diskFull = true;
      fillUp(filler);
      const keepFull = setInterval(() => fillUp(filler), 10);
      log(`soak: ${small} is full`);
      let adds = 0;
      let runs = 0;
      for (let k = 0; k < 10 && (adds < 3 || runs < 3); k++) {
        fillUp(filler);
        const vol = `/soak/enospc${k}`;
        const before = registryTrace(volRoot);
        const add = katavol('direct-volume', 'add', vol, JSON.stringify({ 'volume-type': 'directvol', device: sharedImg, fstype: 'ext4' }));
        faultsInjected++;
        if (add.status === 0) volumes.push(vol);
        else if (!ENOSPC_ERROR.test(add.stderr)) problems.push(`${vol}: expected direct-volume add to fail with "no space left on device", got exit ${add.status}: ${add.stderr.trim().slice(0, 300)}`);
        else {
          adds++;
          faultFailures.push(`${vol}: direct-volume add exited ${add.status}: ${add.stderr.trim()}`);
          // Only this add's traces: its entry or a temp name (the churn's sandbox records come and go meanwhile).
          const traces = registryTrace(volRoot).filter((n) => !before.includes(n) && (n.startsWith(encodeVolumePath(vol)) || path.basename(n).startsWith(TEMP_PREFIX)));
          if (traces.length) problems.push(`${vol}: the failed add left ${traces.join(', ')} in the registry`);
        }
        fillUp(filler);
        const id = `enospc${k}`;
        const r = await ctrRun(['run', '--rm', '--runtime', SHIM, '--rootfs', rootfs, id, '/bin/sh', '-c', 'echo started']);
        if (r.status !== 0 && !ENOSPC_ERROR.test(r.stderr)) problems.push(`${id}: expected ctr run to fail with "no space left on device", got exit ${r.status}: ${r.stderr.trim().slice(0, 300)}`);
        else if (r.status !== 0) {
          runs++;
          faultFailures.push(`${id}: ctr run exited ${r.status}: ${r.stderr.trim()}`);
          if (ctrSync(['container', 'delete', id]).status === 0) userCleaned++;
        }
      }
      if (!adds || !runs) problems.push(`the full disk was never met: ${adds} adds and ${runs} runs failed with ENOSPC`);
      clearInterval(keepFull);
      fs.rmSync(filler, { force: true });
      diskFull = false;
      log(`soak: ${small} has room again`);
    } else if (f === 'image-gone') {
      // A running container's image deleted (even k) or its loop device detached by someone else (odd k):
      // stopping and deleting it must still work and release everything.
      for (let k = 0; k < Math.max(2, Math.floor(opts.containers / 50)); k++) {
        const id = `gone${k}`;
        const img = newImage(id);
        if (!register(`/soak/${id}`, img)) continue;
        const r = await ctrRun(['run', '-d', '--runtime', SHIM, '--mount', `type=directvol,src=/soak/${id},dst=/disk,options=rbind:rw`, '--rootfs', rootfs, id,
          '/bin/sh', '-c', 'echo kept > /disk/t; sync; sleep 600']);
        if (r.status !== 0) {
          problems.push(`${id}: ctr run -d exited ${r.status}: ${r.stderr.trim().slice(0, 300)}`);
          continue;
        }
        faultsInjected++;
        if (k % 2 === 0) {
          fs.rmSync(img);
          images.splice(images.indexOf(img), 1); // nothing left to check in it; its loop devices still are
          goneImages.push(img);
          log(`soak: ${id}: image deleted while the container runs`);
        } else {
          for (const dev of loopsBackedBy(img)) spawnSync('losetup', ['-d', dev]);
          log(`soak: ${id}: loop device detached by someone else while the container runs`);
        }
        for (const step of [['task', 'kill', '-s', 'SIGKILL', id], ['task', 'delete', id], ['container', 'delete', id]]) {
          let d = ctrSync(step);
          // task delete answers FailedPrecondition until the kill has landed.
          for (let t = 0; t < 50 && d.status !== 0 && step[1] === 'delete' && /is running|not stopped|precondition/i.test(d.stderr); t++) {
            await sleep(100);
            d = ctrSync(step);
          }
          if (d.status !== 0) problems.push(`${id}: ctr ${step.slice(0, 2).join(' ')} exited ${d.status}: ${d.stderr.trim().slice(0, 300)}`);
        }
      }
    } else {
      const needle = f === 'kill-daemons' ? 'shim/bin.js' : 'containerd-shim-runc-v2';
      while (next < opts.containers) {
        const victims = daemonPids(needle);
        if (victims.length) {
          const pid = victims[Math.floor(Math.random() * victims.length)];
          try {
            process.kill(pid, 'SIGKILL');
            faultsInjected++;
          } catch { /* exited */ }
        }
        await sleep(1500);
      }
    }
    // Failures may still come from runs that were in flight; the fault window ends with the churn.
  })();
  await Promise.all(workers);
  await injector;
  const seconds = (Date.now() - t0) / 1000;
  sampling = false;
  await sampler;
  // Pods count two containers each.
  const containers = opts.containers + byKind.pod;

  log(`soak: churn done after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // After a fault, a user cleans up what ctr left behind, as they would: kill and delete tasks, then
  // delete containers. Everything else must go by itself.
  if (opts.fault) {
    const ls = (what: string) => ctrSync([what, 'ls', '-q']).stdout.split('\n').filter(Boolean);
    for (const t of ls('task')) {
      ctrSync(['task', 'kill', '-s', 'SIGKILL', t]);
      for (let k = 0; k < 50 && ctrSync(['task', 'delete', t]).status !== 0; k++) await sleep(100);
    }
    for (const c of ls('container')) {
      if (ctrSync(['container', 'delete', c]).status === 0) userCleaned++;
    }
  }

  // Nothing left (an orphaned daemon takes up to its orphan timeout to go; the reaper's sweeps run in
  // starts, deletes and waiting warm daemons).
  log(`soak: checking for leftovers after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const startRecords = (): string[] => { try { return fs.readdirSync(path.join(sockDir, STARTS_DIR)); } catch { return []; } };
  for (let i = 0; i < 150 && (ours().length > 0 || startRecords().length > 0); i++) await sleep(100);
  log(`soak: leftovers checked after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const left = ours().map((p) => `${p} ${safeCmdline(p)}`);
  if (left.length) problems.push(`processes left: ${left.join('; ')}`);
  for (const img of [...images, ...goneImages]) {
    const loops = loopsBackedBy(img);
    if (loops.length) problems.push(`loop devices left on ${img}: ${loops.join(', ')}`);
  }
  const socks = fs.readdirSync(sockDir).filter((f) => !f.startsWith('.'));
  if (socks.length) problems.push(`sockets, pid files or owner records left in ${sockDir}: ${socks.join(', ')}`);
  if (startRecords().length) problems.push(`start records left in ${path.join(sockDir, STARTS_DIR)}: ${startRecords().join(', ')}`);
  const reg = new Registry(volRoot);
  for (const v of volumes) {
    const s = reg.sandboxesOf(v);
    if (s.length) problems.push(`sandbox records left for ${v}: ${s.map((u) => u.id).join(', ')}`);
  }
  for (const what of [['container', 'ls', '-q'], ['task', 'ls', '-q']]) {
    const out = ctrSync(what).stdout.trim();
    if (out) problems.push(`ctr ${what.slice(0, 2).join(' ')} not empty: ${out.split('\n').join(', ')}`);
  }

  // Nothing lost: every token is in its image, every image is a clean ext4.
  let tokensChecked = 0;
  for (const [img, token] of tokens) {
    const got = debugfsCat(img, '/token');
    if (got !== `${token}\n`) problems.push(`token lost: ${img} holds ${JSON.stringify(got)}, expected ${token}`);
    else tokensChecked++;
  }
  let imagesChecked = 0;
  for (const img of images) {
    const r = spawnSync('e2fsck', ['-fn', img], { encoding: 'utf8' });
    if (r.status !== 0) problems.push(`e2fsck -fn ${img} exited ${r.status}: ${r.stdout.slice(-300)}`);
    else imagesChecked++;
  }

  // How many starts warm daemons served (each serving daemon logs whether it came from the pool).
  const serving = fs.readFileSync(ctd.logFile, 'utf8').split('\n').filter((l) => l.includes('katavol shim daemon serving'));
  const fromPool = serving.filter((l) => /fromPool\W+true/.test(l)).length;

  if (problems.length || faultFailures.some((f) => !explainedFailure(f))) {
    // What a diagnosis needs, kept with the images: containerd's log (shim logs included) and socketDir.
    fs.copyFileSync(ctd.logFile, path.join(work, 'containerd.log'));
    spawnSync('cp', ['-a', sockDir, path.join(work, 'socketDir')]);
  }
  await ctd.stop();
  await stopPool(sockDir);
  fs.rmSync(sockDir, { recursive: true, force: true });
  if (small) {
    for (let i = 0; i < 50 && spawnSync('umount', [small]).status !== 0; i++) await sleep(100);
    try { fs.rmdirSync(small); } catch (e) { problems.push(`cannot unmount the tmpfs ${small}: ${(e as Error).message}`); }
  }
  if (fs.existsSync(path.join(work, 'containerd.log'))) log(`soak: scratch kept for inspection: ${work}`);
  if (!problems.length && !fs.existsSync(path.join(work, 'containerd.log'))) fs.rmSync(work, { recursive: true, force: true });
  else if (problems.length) problems.push(`scratch kept for inspection: ${work}`);

  latencies.sort((a, b) => a - b);
  const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : NaN);
  return {
    containers, seconds, perSecond: containers / seconds, p50Ms: pct(50), p99Ms: pct(99), peakDaemonRssKiB: peakRss,
    tokensChecked, imagesChecked, byKind, problems, faultFailures, faultsInjected, userCleaned, daemons: serving.length, fromPool, outputLost,
  };
}

/** The runc shim behind a script that SIGSTOPs the shim it started for an id marked by <dir>/stop-<id>
 *  (once), before answering: containerd's Create then waits on a stopped process. */
function stoppingDownstream(dir: string): string {
  const file = path.join(dir, 'downstream');
  const listener = `process.stdout.write(String(require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'shim', 'downstream'))}).listenerPid(process.argv[1].replace('unix://', '')) ?? ''))`;
  fs.writeFileSync(file, [
    '#!/bin/sh',
    'for last in "$@"; do :; done',
    'if [ "$last" = start ]; then',
    '  id=; prev=; for a in "$@"; do [ "$prev" = -id ] && id=$a; prev=$a; done',
    `  if [ -n "$id" ] && rm "${dir}/stop-$id" 2>/dev/null; then`,
    '    /usr/bin/containerd-shim-runc-v2 "$@"; rc=$?',
    // No shim.pid from this runc shim: its daemon is the process listening on the address it wrote.
    `    pid=$(${process.execPath} -e "${listener.replace(/"/g, '\\"')}" "$(cat address)")`,
    `    [ -n "$pid" ] && kill -STOP "$pid" && echo "$pid" > "${dir}/stopped-$id"`,
    '    exit $rc',
    '  fi',
    'fi',
    'exec /usr/bin/containerd-shim-runc-v2 "$@"',
    '',
  ].join('\n'), { mode: 0o755 });
  return file;
}

/** How long one of the soak's own ctr calls may take: containerd answers them in milliseconds. */
const CTR_SYNC_TIMEOUT_MS = 60000;

/** For a hung ctr call: who holds this run's sockets (ss), and each process's state and kernel wait. */
function hangReport(args: string[], pids: number[], sockDir: string): string {
  const ss = spawnSync('ss', ['-xap'], { encoding: 'utf8' }).stdout ?? '';
  const lines = ss.split('\n').filter((l) => l.includes(sockDir) || pids.some((p) => l.includes(`pid=${p},`)));
  const procs = pids.filter((p) => p > 0).map((p) => {
    let stat = '';
    let wchan = '';
    let fds = -1;
    try { stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(' ')[2]; } catch { /* exited */ }
    try { wchan = fs.readFileSync(`/proc/${p}/wchan`, 'utf8'); } catch { /* exited */ }
    try { fds = fs.readdirSync(`/proc/${p}/fd`).length; } catch { /* exited */ }
    return `${p} state=${stat} wchan=${wchan} fds=${fds} ${safeCmdline(p)}`;
  });
  return [`ctr ${args.join(' ')}`, `at ${new Date().toISOString()}`, '', '# processes', ...procs, '', '# unix sockets (ss -xap) of socketDir and of those processes', ...lines, ''].join('\n');
}

/** Writes until the filesystem is full (big chunks, then small ones for the rest). */
function fillUp(file: string): void {
  const fd = fs.openSync(file, 'a');
  try {
    for (const size of [1 << 20, 4096, 512, 64]) {
      const chunk = Buffer.alloc(size, 1);
      for (;;) {
        try { fs.writeSync(fd, chunk); } catch { break; }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Every name under the registry root, for "a failed add left nothing" (sandbox records come and go). */
function registryTrace(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let names: string[];
    try { names = fs.readdirSync(d); } catch { return; }
    for (const n of names) {
      const p = path.join(d, n);
      out.push(path.relative(root, p));
      if (fs.lstatSync(p).isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

function safeCmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').slice(0, 200);
  } catch {
    return '(exited)';
  }
}

export function formatSoak(r: SoakResult): string {
  return [
    `containers: ${r.containers} (${Object.entries(r.byKind).map(([k, v]) => `${v} ${k}`).join(', ')}; pods count 2) in ${r.seconds.toFixed(1)} s = ${r.perSecond.toFixed(2)} containers/s`,
    `start latency (ctr run -> first output): p50 ${r.p50Ms.toFixed(0)} ms, p99 ${r.p99Ms.toFixed(0)} ms`,
    `peak katavol daemon RSS: ${(r.peakDaemonRssKiB / 1024).toFixed(1)} MiB; daemons started: ${r.daemons}, ${r.fromPool} of them warm from the pool`,
    `tokens read back with debugfs: ${r.tokensChecked}; images clean under e2fsck -fn: ${r.imagesChecked}`,
    ...(r.faultsInjected ? [`fault injected ${r.faultsInjected} time(s); runs it failed: ${r.faultFailures.length}; containers a user deleted afterwards: ${r.userCleaned}`] : []),
    ...r.faultFailures.map((p) => `  ~ ${p}`),
    ...(r.outputLost.length ? [`runs that exited 0 but whose output ctr lost (${LOST_OUTPUT}): ${r.outputLost.length}`, ...r.outputLost.map((l) => `  ? ${l}`)] : []),
    `problems: ${r.problems.length}`,
    ...r.problems.map((p) => `  - ${p}`),
  ].join('\n');
}
