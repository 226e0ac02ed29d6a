// Churn through a private containerd, the katavol shim and the runc backend: N containers, P at a time,
// mixing no volume, a read-write directvol on its own image, a read-only volume shared by many, and pods
// of two containers on one shim. Every writer's token is read back from its image with debugfs, every
// image passes e2fsck -fn, and nothing the run made may be left: no process, loop device, socket,
// sandbox record, container or task. `make soak` prints the figures; the test suite runs a small one.
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { PrivateContainerd, SHIM, debugfsCat, loopDevicesOf, makeExt4Image, makeRootfs, sleep, tmpDir } from './containerd';
import { Registry } from '../../src/volumes/registry';

export type Kind = 'none' | 'rw' | 'ro' | 'pod';
export const KINDS: readonly Kind[] = ['none', 'rw', 'ro', 'pod'];

/** Injected once the churn is a third done (kill-* repeat through the rest of it). */
export type Fault = 'containerd-sigterm' | 'containerd-sigkill' | 'start-in-flight' | 'kill-daemons' | 'kill-downstreams';
export const FAULTS: readonly Fault[] = ['containerd-sigterm', 'containerd-sigkill', 'start-in-flight', 'kill-daemons', 'kill-downstreams'];

/** What ctr prints when the daemon, shim or containerd it talks to went away mid-call. */
export const FAULT_ERRORS = /ttrpc: closed|failed to dial|transport is closing|connection closed: unavailable|connection refused|connection reset|Unavailable|error reading from server: EOF|context canceled|shim disconnected|no such file or directory|failed to (start|create) shim|task .* not found|exit status 1: |not found/;

export interface SoakOptions {
  containers: number;
  parallel: number;
  fault?: Fault;
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
  /** Every problem found; empty means the soak passed. */
  problems: string[];
}

interface Run {
  status: number;
  stdout: string;
  stderr: string;
  /** ms from spawn to the first stdout byte (the container ran), or -1. */
  firstOutputMs: number;
}

const SHARED_VOLUME = '/soak/shared';
const SHARED_TEXT = 'shared-read-only-content';

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const log = opts.log ?? (() => undefined);
  const work = tmpDir('katavol-soak-');
  const sockDir = fs.mkdtempSync('/tmp/kvsoak-');
  const volRoot = path.join(work, 'volumes');
  const config = path.join(work, 'katavol.json');
  fs.writeFileSync(config, JSON.stringify({ backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2', socketDir: sockDir }));
  const rootfs = makeRootfs(work);
  const env = { ...process.env, KATAVOL_VOLUME_ROOT: volRoot, KATAVOL_CONFIG: config };
  const katavol = (...args: string[]) => spawnSync(path.join(__dirname, '..', '..', '..', 'bin', 'katavol'), args, { encoding: 'utf8', env });
  const problems: string[] = [];
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
  const register = (vol: string, device: string): void => {
    const r = katavol('direct-volume', 'add', vol, JSON.stringify({ 'volume-type': 'directvol', device, fstype: 'ext4' }));
    if (r.status !== 0) throw new Error(`direct-volume add ${vol}: ${r.stderr}`);
    volumes.push(vol);
  };
  register(SHARED_VOLUME, sharedImg);

  // A short orphan timeout, so a daemon whose start containerd lost is gone before the leak checks.
  const ctd = await PrivateContainerd.start({ env: { KATAVOL_CONFIG: config, KATAVOL_VOLUME_ROOT: volRoot, KATAVOL_ORPHAN_TIMEOUT_MS: '4000' } });
  const ctrArgs = (args: string[]) => ['-a', ctd.sock, '-n', ctd.namespace, ...args];
  const ctrRun = (args: string[]): Promise<Run> => new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const p = spawn('ctr', ctrArgs(args), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let first = -1;
    p.stdout.on('data', (d: Buffer) => {
      if (first < 0) first = Number(process.hrtime.bigint() - t0) / 1e6;
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 120000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr, firstOutputMs: first });
    });
  });
  const run = (id: string, cmd: string, mounts: string[] = [], extra: string[] = []) =>
    ctrRun(['run', '--rm', '--runtime', SHIM, ...mounts.flatMap((m) => ['--mount', m]), ...extra, '--rootfs', rootfs, id, '/bin/sh', '-c', cmd]);

  // Peak RSS of katavol daemons (node processes serving this containerd's tasks).
  let peakRss = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const pid of ctd.shimPids()) {
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
  const faultFailures: string[] = [];
  let faultActive = false;
  /** True when the run succeeded with the expected output; a failure during a fault is noted, not a problem. */
  const expectOk = (id: string, r: Run, out: RegExp): boolean => {
    if (r.firstOutputMs >= 0) latencies.push(r.firstOutputMs);
    if (r.status === 0 && out.test(r.stdout)) return true;
    const what = r.status !== 0 ? `${id}: ctr run exited ${r.status}: ${r.stderr.trim().slice(0, 400)}` : `${id}: unexpected output ${JSON.stringify(r.stdout.slice(0, 200))}`;
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
      register(`/soak/${id}`, img);
      const ok = expectOk(id, await run(id, `echo started; echo ${token} > /disk/token && sync && cat /disk/token`, [`type=directvol,src=/soak/${id},dst=/disk,options=rbind:rw`]), new RegExp(`^started\\n${token}\\n$`));
      // A run a fault cut short may not have written it; one that printed it back must have it on disk.
      if (ok) tokens.set(img, token);
    } else {
      // A pod: two containers on one runc shim (grouped by the sandbox annotation), so on one katavol
      // daemon; the first writes its own image and outlives the second, which reads the shared volume.
      const img = newImage(`${id}-a`);
      const token = `token-${id}-${process.pid}`;
      register(`/soak/${id}`, img);
      const pod = ['--annotation', `io.kubernetes.cri.sandbox-id=${id}`];
      const first = run(`${id}-a`, `echo started; echo ${token} > /disk/token && sync; i=0; while [ ! -e /disk/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; cat /disk/token`,
        [`type=directvol,src=/soak/${id},dst=/disk,options=rbind:rw`], pod);
      // The second starts once the first is running (its bundle's shim is up), then lets it finish.
      for (let k = 0; k < 600 && !fs.existsSync(path.join(ctd.bundleOf(`${id}-a`), 'init.pid')); k++) await sleep(50);
      const second = await run(`${id}-b`, 'echo started; cat /disk/hello', [`type=directvol,src=${SHARED_VOLUME},dst=/disk,options=rbind:ro`], pod);
      expectOk(`${id}-b`, second, new RegExp(`^started\\n${SHARED_TEXT}$`));
      // The first waits for a flag in its volume: exec the touch through the proxy, as a user would.
      const ex = spawnSync('ctr', ctrArgs(['task', 'exec', '--exec-id', 'go', `${id}-a`, '/bin/touch', '/disk/go']), { encoding: 'utf8' });
      if (ex.status !== 0) {
        (faultActive ? faultFailures : problems).push(`${id}-a: exec failed: ${ex.stderr.trim()}`);
        spawnSync('ctr', ctrArgs(['task', 'kill', '-s', 'SIGKILL', `${id}-a`])); // rather than wait out its 30 s
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
  const daemonPids = (needle: string) => ctd.shimPids().filter((p) => safeCmdline(p).includes(needle));
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
  let userCleaned = 0;
  if (opts.fault) {
    const ls = (what: string) => spawnSync('ctr', ctrArgs([what, 'ls', '-q']), { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    for (const t of ls('task')) {
      spawnSync('ctr', ctrArgs(['task', 'kill', '-s', 'SIGKILL', t]));
      for (let k = 0; k < 50 && spawnSync('ctr', ctrArgs(['task', 'delete', t])).status !== 0; k++) await sleep(100);
    }
    for (const c of ls('container')) {
      if (spawnSync('ctr', ctrArgs(['container', 'delete', c])).status === 0) userCleaned++;
    }
  }

  // Nothing left (an orphaned daemon takes up to its orphan timeout to go).
  log(`soak: checking for leftovers after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (let i = 0; i < 150 && ctd.shimPids().length > 0; i++) await sleep(100);
  log(`soak: leftovers checked after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const left = ctd.shimPids().map((p) => `${p} ${safeCmdline(p)}`);
  if (left.length) problems.push(`processes left: ${left.join('; ')}`);
  for (const img of images) {
    const loops = loopDevicesOf(img);
    if (loops.length) problems.push(`loop devices left on ${img}: ${loops.join(', ')}`);
  }
  const socks = fs.readdirSync(sockDir).filter((f) => !f.startsWith('.'));
  if (socks.length) problems.push(`sockets left in ${sockDir}: ${socks.join(', ')}`);
  const reg = new Registry(volRoot);
  for (const v of volumes) {
    const s = reg.sandboxesOf(v);
    if (s.length) problems.push(`sandbox records left for ${v}: ${s.map((u) => u.id).join(', ')}`);
  }
  for (const what of [['container', 'ls', '-q'], ['task', 'ls', '-q']]) {
    const out = spawnSync('ctr', ctrArgs(what), { encoding: 'utf8' }).stdout.trim();
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

  await ctd.stop();
  fs.rmSync(sockDir, { recursive: true, force: true });
  if (!problems.length) fs.rmSync(work, { recursive: true, force: true });
  else problems.push(`scratch kept for inspection: ${work}`);

  latencies.sort((a, b) => a - b);
  const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : NaN);
  return {
    containers, seconds, perSecond: containers / seconds, p50Ms: pct(50), p99Ms: pct(99), peakDaemonRssKiB: peakRss,
    tokensChecked, imagesChecked, byKind, problems, faultFailures, faultsInjected, userCleaned,
  };
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
    `peak katavol daemon RSS: ${(r.peakDaemonRssKiB / 1024).toFixed(1)} MiB`,
    `tokens read back with debugfs: ${r.tokensChecked}; images clean under e2fsck -fn: ${r.imagesChecked}`,
    ...(r.faultsInjected ? [`fault injected ${r.faultsInjected} time(s); runs it failed: ${r.faultFailures.length}; containers a user deleted afterwards: ${r.userCleaned}`] : []),
    ...r.faultFailures.map((p) => `  ~ ${p}`),
    `problems: ${r.problems.length}`,
    ...r.problems.map((p) => `  - ${p}`),
  ].join('\n');
}
