// Shim section: what katavol adds to containerd's critical path, measured through a private containerd
// with the runc backend (the runtime-rs path differs only in the backend's spec building, measured last).
import type { BundleState } from '../../src/shim/state';
import * as fs from 'fs';
import * as path from 'path';
import { fmt, median, printTable, type Section } from './section';
import { PrivateContainerd, SHIM, makeExt4Image, makeRootfs, pidsMatching, tmpDir } from '../../test/support/containerd';
import { Registry } from '../../src/volumes/registry';
import { CreateInterceptor } from '../../src/shim/interceptor';
import { createBackend } from '../../src/backends';
import { loadConfig } from '../../src/shim/config';
import { createLogger } from '../../src/shim/logger';
import { Writable } from 'stream';
import { spawn, spawnSync } from 'child_process';
import { listPool, stopPool } from '../../src/shim/pool';
import { sleep } from '../../test/support/containerd';
import { katavolLogLines } from '../../test/support/logrus';
import { loadAverage, perRound, quantile, runcShimPid, stateRounds } from './state-calls';

const RUNS = Number(process.env.BENCH_RUNS ?? '15');
/** Task.State rounds and calls per round and path. */
const STATE_ROUNDS = 10;
const STATE_CALLS = 1000;

async function run(): Promise<void> {
  const work = tmpDir('katavol-bench-');
  // socketDir on tmpfs, as production's /run/katavol is (this VM's /tmp is on its disk).
  const sockDir = fs.mkdtempSync(fs.existsSync('/dev/shm') ? '/dev/shm/kvb-' : '/tmp/kvb-');
  try {
    await measure(work, sockDir);
  } finally {
    fs.rmSync(sockDir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function measure(work: string, sockDir: string): Promise<void> {
  const volRoot = path.join(work, 'volumes');
  const cfgFile = path.join(work, 'katavol.json');
  // One containerd, two configs: the launcher reads its config per start, so a one-line wrapper per
  // config (exec with KATAVOL_CONFIG set) puts cold (warmDaemons 0) and warm side by side in one run.
  const base = { backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2' };
  const cfgCold = path.join(work, 'cold.json');
  const warmDir = path.join(sockDir, 'w');
  fs.writeFileSync(cfgFile, JSON.stringify({ ...base, socketDir: sockDir, warmDaemons: 0 }));
  fs.writeFileSync(cfgCold, JSON.stringify({ ...base, socketDir: path.join(sockDir, 'c'), warmDaemons: 0 }));
  const cfgWarm = (count: number) => {
    const f = path.join(work, `warm${count}.json`);
    fs.writeFileSync(f, JSON.stringify({ ...base, socketDir: `${warmDir}${count}`, warmDaemons: count }));
    return f;
  };
  const wrapper = (name: string, cfg: string) => {
    const f = path.join(work, name);
    fs.writeFileSync(f, `#!/bin/sh\nKATAVOL_CONFIG=${cfg} exec ${SHIM} "$@"\n`, { mode: 0o755 });
    return f;
  };
  const cold = wrapper('shim-cold', cfgCold);
  const warmCfg1 = cfgWarm(1);
  const warm = wrapper('shim-warm', warmCfg1);
  const rootfs = makeRootfs(work);
  const img = path.join(work, 'disk.img');
  makeExt4Image(img, 16);
  new Registry(volRoot).add('/bench/vol', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
  const ctd = await PrivateContainerd.start({ env: { KATAVOL_CONFIG: cfgFile, KATAVOL_VOLUME_ROOT: volRoot }, stateOnTmpfs: fs.existsSync('/dev/shm') });
  const socketDirs = [path.join(sockDir, 'c'), `${warmDir}1`, `${warmDir}8`];
  /** Waits (untimed) until the pool holds a booted daemon: "warm" rows measure a start that finds one. */
  const poolReady = async (dir: string, count = 1) => {
    for (let i = 0; i < 200 && listPool(dir).filter((e) => e.kind === 'warm' && e.alive && !e.claimed).length < count; i++) await sleep(25);
  };
  try {
    // Prime the warm pool (its first start is cold and fills it).
    ctd.ctr(['run', '--rm', '--runtime', warm, '--rootfs', rootfs, 'prime', '/bin/true']);
    const vol = ['--mount', 'type=directvol,src=/bench/vol,dst=/disk,options=rbind:rw'];
    const subjects = [
      { label: 'io.containerd.runc.v2 (direct)', args: ['--runtime', 'io.containerd.runc.v2'] },
      { label: 'katavol cold (warmDaemons 0), no volume', args: ['--runtime', cold] },
      { label: 'katavol warm, no volume', args: ['--runtime', warm], pool: `${warmDir}1` },
      { label: 'katavol cold, 1 directvol (loop)', args: ['--runtime', cold, ...vol] },
      { label: 'katavol warm, 1 directvol (loop)', args: ['--runtime', warm, ...vol], pool: `${warmDir}1` },
    ];
    // 1. ctr run --rm ... /bin/true, interleaved.
    const times: number[][] = subjects.map(() => []);
    for (let i = 0; i < RUNS + 2; i++) {
      for (const [j, s] of subjects.entries()) {
        if (s.pool) await poolReady(s.pool);
        const t0 = process.hrtime.bigint();
        const r = ctd.ctr(['run', '--rm', ...s.args, '--rootfs', rootfs, `b${i}-${j}`, '/bin/true']);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (r.status !== 0) throw new Error(`${s.label}: ctr run failed: ${r.stderr}`);
        if (i >= 2) times[j].push(ms); // two warm-up rounds
      }
    }
    const base0 = median(times[0]);
    process.stdout.write(`ctr run --rm /bin/true, median of ${RUNS} interleaved runs (after 2 warm-ups; "warm": a booted daemon was waiting):\n`);
    printTable(['path', 'median ms', 'min ms', 'max ms', 'ratio vs direct'],
      subjects.map((s, j) => [s.label, fmt(median(times[j]), 1), fmt(Math.min(...times[j]), 1), fmt(Math.max(...times[j]), 1), fmt(median(times[j]) / base0, 2)]));

    // 1b. Time to a running task (ctr run -d returns once Start answered): what a user waits for.
    const startTimes: number[][] = subjects.map(() => []);
    for (let i = 0; i < RUNS + 2; i++) {
      for (const [j, s] of subjects.entries()) {
        const id = `d${i}-${j}`;
        if (s.pool) await poolReady(s.pool);
        const t0 = process.hrtime.bigint();
        const r = ctd.ctr(['run', '-d', ...s.args, '--rootfs', rootfs, id, '/bin/sh', '-c', 'sleep 600']);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (r.status !== 0) throw new Error(`${s.label}: ctr run -d failed: ${r.stderr}`);
        if (i >= 2) startTimes[j].push(ms);
        ctd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
        for (let k = 0; k < 50 && ctd.ctr(['task', 'delete', id]).status !== 0; k++) spawnSync('sleep', ['0.05']);
        ctd.ctr(['container', 'delete', id]);
      }
    }
    const base2 = median(startTimes[0]);
    process.stdout.write(`\nctr run -d (until the task is RUNNING), median of ${RUNS} interleaved runs:\n`);
    printTable(['path', 'median ms', 'min ms', 'max ms', 'ratio vs direct'],
      subjects.map((s, j) => [s.label, fmt(median(startTimes[j]), 1), fmt(Math.min(...startTimes[j]), 1), fmt(Math.max(...startTimes[j]), 1), fmt(median(startTimes[j]) / base2, 2)]));

    // 1c. Back to back: the next start does not wait for the refill (pool of 1 vs the boot of its replacement).
    const b2b: number[] = [];
    await poolReady(`${warmDir}1`);
    let warmHits = 0;
    for (let i = 0; i < RUNS; i++) {
      const t0 = process.hrtime.bigint();
      const r = ctd.ctr(['run', '--rm', '--runtime', warm, '--rootfs', rootfs, `bb${i}`, '/bin/sh', '-c', 'cat /proc/1/cmdline >/dev/null']);
      b2b.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (r.status !== 0) throw new Error(`back to back: ${r.stderr}`);
    }
    warmHits = katavolLogLines(ctd.logFile).filter((l) => l.msg === 'katavol shim daemon serving' && /^bb\d+$/.test(l.id) && l.fromPool === 'true').length;
    process.stdout.write(`\nkatavol warm (pool of 1), ${RUNS} ctr run --rm back to back (no wait for the refill): median ${fmt(median(b2b), 1)} ms, min ${fmt(Math.min(...b2b), 1)}, max ${fmt(Math.max(...b2b), 1)}; ${warmHits} of ${RUNS} found a warm daemon\n`);

    // 1d. Eight concurrent ctr run --rm: direct, katavol with 8 warm daemons, with the default 1, cold.
    const warm8 = wrapper('shim-warm8', cfgWarm(8));
    ctd.ctr(['run', '--rm', '--runtime', warm8, '--rootfs', rootfs, 'prime8', '/bin/true']);
    const conc = [
      { label: 'io.containerd.runc.v2 (direct)', runtime: 'io.containerd.runc.v2' },
      { label: 'katavol warmDaemons 8', runtime: warm8, pool: `${warmDir}8`, count: 8 },
      { label: 'katavol warmDaemons 1', runtime: warm, pool: `${warmDir}1`, count: 1 },
      { label: 'katavol cold', runtime: cold },
    ];
    const concTimes: number[][] = conc.map(() => []);
    for (let i = 0; i < 5; i++) {
      for (const [j, c] of conc.entries()) {
        if (c.pool) await poolReady(c.pool, c.count);
        const t0 = process.hrtime.bigint();
        const runs = await Promise.all(Array.from({ length: 8 }, (_, k) => new Promise<{ id: string; code: number | null; stderr: string }>((resolve) => {
          const id = `cc${i}-${j}-${k}`;
          const p = spawn('ctr', ['-a', ctd.sock, '-n', ctd.namespace, 'run', '--rm', '--runtime', c.runtime, '--rootfs', rootfs, id, '/bin/true'], { stdio: ['ignore', 'ignore', 'pipe'] });
          let stderr = '';
          p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
          p.on('close', (code) => resolve({ id, code, stderr }));
        })));
        concTimes[j].push(Number(process.hrtime.bigint() - t0) / 1e6);
        const failed = runs.filter((x) => x.code !== 0);
        if (failed.length) throw new Error(`${c.label}: ${failed.length} of 8 concurrent ctr run failed:\n${failed.map((x) => `${x.id}: exit ${x.code}: ${x.stderr.trim()}`).join('\n')}`);
      }
    }
    process.stdout.write(`\n8 concurrent ctr run --rm /bin/true, wall time until all 8 returned, median of 5 rounds:\n`);
    printTable(['path', 'median ms', 'ratio vs direct'], conc.map((c, j) => [c.label, fmt(median(concTimes[j]), 1), fmt(median(concTimes[j]) / median(concTimes[0]), 2)]));

    // 2. Per-call latency of a forwarded State, through katavol vs straight to the downstream shim, in
    // interleaved rounds: what katavol adds is taken round by round (a single pair of p50s taken a second
    // apart moved by +-30 us at load 3-5), with its range, the daemon's CPU per call and the load.
    const id = 'bench-state';
    const r = ctd.ctr(['run', '-d', '--runtime', SHIM, '--rootfs', rootfs, id, '/bin/sh', '-c', 'sleep 600']);
    if (r.status !== 0) throw new Error(`ctr run -d: ${r.stderr}`);
    const bundle = ctd.bundleOf(id);
    const st = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8')) as BundleState;
    const load0 = loadAverage();
    const [direct, viaKatavol] = await stateRounds([
      { label: 'direct', socket: st.downstreamAddress, id, pid: st.downstreamPid ?? runcShimPid(ctd, id) },
      { label: 'katavol', socket: st.address, id, pid: st.daemonPid },
    ], STATE_ROUNDS, STATE_CALLS);
    const added = perRound(viaKatavol.p50, direct.p50);
    const spread = (xs: number[], d = 0) => `${fmt(Math.min(...xs), d)}-${fmt(Math.max(...xs), d)}`;
    process.stdout.write(`\nTask.State latency, ${STATE_ROUNDS} interleaved rounds of ${STATE_CALLS} sequential calls per path (load average ${load0} -> ${loadAverage()}):\n`);
    const cpu = (f: typeof direct) => (f.cpu.length ? `${fmt(median(f.cpu), 1)} (${spread(f.cpu, 1)})` : '');
    printTable(['path', 'p50 us', 'p50 of rounds', 'p99 us', 'server CPU us/call'], [
      ['downstream shim directly', fmt(quantile(direct.all, 0.5)), spread(direct.p50), fmt(quantile(direct.all, 0.99)), cpu(direct)],
      ['through katavol', fmt(quantile(viaKatavol.all, 0.5)), spread(viaKatavol.p50), fmt(quantile(viaKatavol.all, 0.99)), cpu(viaKatavol)],
      ['added by katavol (median of rounds)', fmt(median(added)), spread(added), '', ''],
    ]);

    // 3. Daemon memory: one container, a pod of 8 sharing the daemon, and a warm daemon waiting.
    const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    const rss1 = rss(st.daemonPid!);
    const podIds: string[] = [];
    for (let i = 0; i < 8; i++) {
      const pid = `bench-pod-${i}`;
      const pr = ctd.ctr(['run', '-d', '--runtime', SHIM, '--annotation', 'io.kubernetes.cri.sandbox-id=benchpod', '--rootfs', rootfs, pid, '/bin/sh', '-c', 'sleep 600']);
      if (pr.status !== 0) throw new Error(`pod container: ${pr.stderr}`);
      podIds.push(pid);
    }
    const podState = JSON.parse(fs.readFileSync(path.join(ctd.bundleOf(podIds[0]), 'katavol.json'), 'utf8')) as BundleState;
    const rss8 = rss(podState.daemonPid!);
    await poolReady(`${warmDir}1`);
    await sleep(3000); // settled: the warm daemon has been idle a while
    const warmPid = listPool(`${warmDir}1`).find((e) => e.kind === 'warm' && e.alive && !e.claimed)?.pid;
    const rssWarm = warmPid ? rss(warmPid) : NaN;
    // A serving daemon that came from the pool, after its container started (its logger loaded).
    const wid = 'bench-warm-serving';
    const wr = ctd.ctr(['run', '-d', '--runtime', warm, '--rootfs', rootfs, wid, '/bin/sh', '-c', 'sleep 600']);
    if (wr.status !== 0) throw new Error(`warm serving: ${wr.stderr}`);
    await sleep(1000);
    const rssWarmServing = rss((JSON.parse(fs.readFileSync(path.join(ctd.bundleOf(wid), 'katavol.json'), 'utf8')) as BundleState).daemonPid!);
    const bare = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 5000)'], { stdio: 'ignore' });
    await sleep(1000);
    const rssNode = rss(bare.pid!);
    bare.kill('SIGKILL');
    process.stdout.write(`\nkatavol daemon RSS (MiB): serving 1 container (cold-started) ${fmt(rss1 / 1024, 1)}; serving 1 container (from the pool) ${fmt(rssWarmServing / 1024, 1)}; ` +
      `a pod of 8 ${fmt(rss8 / 1024, 1)} (${fmt(rss8 / 8 / 1024, 1)} per container); warm, waiting ${fmt(rssWarm / 1024, 1)}; bare node -e ${fmt(rssNode / 1024, 1)}\n`);
    const goPids = pidsMatching(ctd.sock).filter((x) => fs.readFileSync(`/proc/${x}/cmdline`, 'utf8').startsWith('/usr/bin/containerd-shim-runc-v2'));
    if (goPids.length) process.stdout.write(`(for scale: a containerd-shim-runc-v2 daemon here uses ${fmt(rss(goPids[0]) / 1024, 1)} MiB)\n`);
  } finally {
    await ctd.stop();
    for (const d of socketDirs) await stopPool(d);
  }

  // 4. Create interception in-process: resolve + backend + spec rewrite, 1 and 64 volumes.
  // The registry lives on tmpfs in production (/run/kata-containers): measure there too, not on a disk
  // whose fsyncs would dominate (this VM's /run and /tmp are on its disk).
  const createRoot = fs.existsSync('/dev/shm') ? '/dev/shm' : undefined;
  process.stdout.write(`\nCreate interception (resolve, host checks, backend, atomic config.json rewrite), registry and images on ${createRoot ?? 'the temp dir'}, median of 9:\n`);
  const rows: Array<Array<string | number>> = [];
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const log = createLogger({ level: 'info', stream: sink });
  // Create checks each image's superblock against its fstype: copy one real ext4 image.
  const template = path.join(tmpDir('katavol-bench-template-'), 'ext4.img');
  makeExt4Image(template, 1);
  for (const backend of ['runc', 'runtime-rs'] as const) {
    for (const count of [1, 64]) {
      const ms: number[] = [];
      for (let rep = 0; rep < 9; rep++) {
        const dir = createRoot ? fs.mkdtempSync(path.join(createRoot, 'katavol-bench-create-')) : tmpDir('katavol-bench-create-');
        const reg = new Registry(path.join(dir, 'volumes'));
        const mounts = [];
        for (let i = 0; i < count; i++) {
          const f = path.join(dir, `v${i}.img`);
          fs.copyFileSync(template, f);
          reg.add(`/bench/v${i}`, JSON.stringify({ 'volume-type': 'directvol', device: f, fstype: 'ext4' }));
          mounts.push({ destination: `/d${i}`, type: 'directvol', source: `/bench/v${i}`, options: ['rbind', 'rw'] });
        }
        const bundle = path.join(dir, 'bundle');
        fs.mkdirSync(bundle);
        fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', mounts }));
        const cfg = { ...loadConfig({ KATAVOL_CONFIG: cfgFile, PATH: process.env.PATH }), backend };
        const icp = new CreateInterceptor({ volumeRoot: reg.root, log, makeBackend: () => createBackend(backend, { config: cfg, volumeRoot: reg.root }) });
        const t0 = process.hrtime.bigint();
        const prepared = await icp.create(`c${rep}`, bundle);
        ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
        await prepared?.rollback('benchmark');
        fs.rmSync(dir, { recursive: true, force: true });
      }
      rows.push([backend, count, fmt(median(ms), 2), fmt(median(ms) / count, 3)]);
    }
  }
  fs.rmSync(path.dirname(template), { recursive: true, force: true });
  printTable(['backend', 'volumes', 'median ms', 'ms per volume'], rows);

  await criPod();
}

/** Kubernetes' path: RunPodSandbox + CreateContainer + StartContainer through containerd's CRI plugin. */
async function criPod(): Promise<void> {
  const { CriContainerd, KATAVOL_HANDLER } = await import('../../test/support/cri');
  const cri = await CriContainerd.start();
  try {
    const base = JSON.parse(fs.readFileSync(cri.katavolConfig, 'utf8')) as Record<string, unknown>;
    const rows: Array<Array<string | number>> = [];
    let runcMedian = 0;
    for (const warmDaemons of [1, 0]) {
      fs.writeFileSync(cri.katavolConfig, JSON.stringify({ ...base, warmDaemons }));
      const untimed = await cri.runPod(undefined, KATAVOL_HANDLER); // fills the pool (its start is cold)
      await cri.runContainer(untimed, 'prime');
      await cri.removePod(untimed);
      const times = new Map<string, number[]>([['runc', []], [KATAVOL_HANDLER, []]]);
      for (let i = 0; i < RUNS + 1; i++) {
        for (const handler of times.keys()) {
          if (handler === KATAVOL_HANDLER && warmDaemons) {
            for (let k = 0; k < 200 && !listPool(cri.socketDir).some((e) => e.kind === 'warm' && e.alive && !e.claimed); k++) await sleep(25);
          }
          const t0 = process.hrtime.bigint();
          const pod = await cri.runPod(undefined, handler);
          await cri.runContainer(pod, 'app');
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          await cri.removePod(pod);
          if (i >= 1) times.get(handler)!.push(ms);
        }
      }
      const r = median(times.get('runc')!);
      runcMedian ||= r;
      const k = median(times.get(KATAVOL_HANDLER)!);
      if (warmDaemons) rows.push(['runc handler', fmt(r, 1), '1.00']);
      rows.push([`katavol handler, ${warmDaemons ? 'warm (warmDaemons 1)' : 'cold (warmDaemons 0)'}`, fmt(k, 1), fmt(k / r, 2)]);
    }
    process.stdout.write(`\nCRI pod: RunPodSandbox + CreateContainer + StartContainer (host network), median of ${RUNS} interleaved runs per mode:\n`);
    printTable(['path', 'median ms', 'ratio vs runc handler (same rounds)'], rows);
  } finally {
    await cri.stop();
  }
}

export const section: Section = { name: 'shim', title: 'katavol shim overhead vs the direct runc shim (private containerd)', run };
