// Shim section: what katavol adds to containerd's critical path, measured through a private containerd
// with the runc backend (the runtime-rs path differs only in the backend's spec building, measured last).
import type { BundleState } from '../../src/shim/state';
import * as fs from 'fs';
import * as path from 'path';
import { fmt, median, printTable, type Section } from './section';
import { PrivateContainerd, SHIM, makeExt4Image, makeRootfs, pidsMatching, tmpDir } from '../../test/support/containerd';
import { Client } from '../../src/ttrpc';
import { Registry } from '../../src/volumes/registry';
import { CreateInterceptor } from '../../src/shim/interceptor';
import { createBackend } from '../../src/backends';
import { loadConfig } from '../../src/shim/config';
import { createLogger } from '../../src/shim/logger';
import { Writable } from 'stream';
import { spawnSync } from 'child_process';

const RUNS = Number(process.env.BENCH_RUNS ?? '15');
const CALLS = 2000;

async function run(): Promise<void> {
  const work = tmpDir('katavol-bench-');
  const sockDir = fs.mkdtempSync('/tmp/kvb-');
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
  fs.writeFileSync(cfgFile, JSON.stringify({ backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2', socketDir: sockDir }));
  const rootfs = makeRootfs(work);
  const img = path.join(work, 'disk.img');
  makeExt4Image(img, 16);
  new Registry(volRoot).add('/bench/vol', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
  const ctd = await PrivateContainerd.start({ env: { KATAVOL_CONFIG: cfgFile, KATAVOL_VOLUME_ROOT: volRoot } });
  try {
    // 1. ctr run --rm ... /bin/true, interleaved: direct runc, katavol without volume, katavol with a volume.
    const subjects = [
      { label: 'io.containerd.runc.v2 (direct)', args: ['--runtime', 'io.containerd.runc.v2'] },
      { label: 'katavol, no volume', args: ['--runtime', SHIM] },
      { label: 'katavol, 1 directvol (loop)', args: ['--runtime', SHIM, '--mount', 'type=directvol,src=/bench/vol,dst=/disk,options=rbind:rw'] },
    ];
    const times: number[][] = subjects.map(() => []);
    for (let i = 0; i < RUNS + 2; i++) {
      subjects.forEach((s, j) => {
        const t0 = process.hrtime.bigint();
        const r = ctd.ctr(['run', '--rm', ...s.args, '--rootfs', rootfs, `b${i}-${j}`, '/bin/true']);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (r.status !== 0) throw new Error(`${s.label}: ctr run failed: ${r.stderr}`);
        if (i >= 2) times[j].push(ms); // two warm-up rounds
      });
    }
    const base = median(times[0]);
    process.stdout.write(`ctr run --rm /bin/true, median of ${RUNS} interleaved runs (after 2 warm-ups):\n`);
    printTable(['path', 'median ms', 'min ms', 'max ms', 'ratio vs direct'],
      subjects.map((s, j) => [s.label, fmt(median(times[j]), 1), fmt(Math.min(...times[j]), 1), fmt(Math.max(...times[j]), 1), fmt(median(times[j]) / base, 2)]));

    // 1b. Time to a running task (ctr run -d returns once Start answered): what a user waits for.
    const startTimes: number[][] = subjects.map(() => []);
    for (let i = 0; i < RUNS + 2; i++) {
      subjects.forEach((s, j) => {
        const id = `d${i}-${j}`;
        const t0 = process.hrtime.bigint();
        const r = ctd.ctr(['run', '-d', ...s.args, '--rootfs', rootfs, id, '/bin/sh', '-c', 'sleep 600']);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (r.status !== 0) throw new Error(`${s.label}: ctr run -d failed: ${r.stderr}`);
        if (i >= 2) startTimes[j].push(ms);
        ctd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
        for (let k = 0; k < 50 && ctd.ctr(['task', 'delete', id]).status !== 0; k++) spawnSync('sleep', ['0.05']);
        ctd.ctr(['container', 'delete', id]);
      });
    }
    const base2 = median(startTimes[0]);
    process.stdout.write(`\nctr run -d (until the task is RUNNING), median of ${RUNS} interleaved runs:\n`);
    printTable(['path', 'median ms', 'min ms', 'max ms', 'ratio vs direct'],
      subjects.map((s, j) => [s.label, fmt(median(startTimes[j]), 1), fmt(Math.min(...startTimes[j]), 1), fmt(Math.max(...startTimes[j]), 1), fmt(median(startTimes[j]) / base2, 2)]));

    // 2. Per-call latency of a forwarded State, through katavol vs straight to the downstream shim.
    const id = 'bench-state';
    const r = ctd.ctr(['run', '-d', '--runtime', SHIM, '--rootfs', rootfs, id, '/bin/sh', '-c', 'sleep 600']);
    if (r.status !== 0) throw new Error(`ctr run -d: ${r.stderr}`);
    const bundle = ctd.bundleOf(id);
    const st = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8')) as BundleState;
    const stateReq = Buffer.concat([Buffer.from([0x0a, id.length]), Buffer.from(id)]);
    const lat = async (sock: string): Promise<number[]> => {
      const c = await Client.connect(sock.replace('unix://', ''));
      const out: number[] = [];
      for (let i = 0; i < CALLS; i++) {
        const t0 = process.hrtime.bigint();
        await c.call('containerd.task.v2.Task', 'State', stateReq);
        out.push(Number(process.hrtime.bigint() - t0) / 1e3);
      }
      c.close();
      return out.slice(100);
    };
    const viaKatavol: number[] = [];
    const direct: number[] = [];
    for (let round = 0; round < 3; round++) {
      direct.push(...(await lat(st.downstreamAddress)));
      viaKatavol.push(...(await lat(st.address)));
    }
    const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * q)];
    process.stdout.write(`\nTask.State latency, ${viaKatavol.length} sequential calls each, interleaved rounds:\n`);
    printTable(['path', 'p50 us', 'p99 us'], [
      ['downstream shim directly', fmt(p(direct, 0.5)), fmt(p(direct, 0.99))],
      ['through katavol', fmt(p(viaKatavol, 0.5)), fmt(p(viaKatavol, 0.99))],
      ['added by katavol', fmt(p(viaKatavol, 0.5) - p(direct, 0.5)), ''],
    ]);

    // 3. Daemon memory: one container, then a pod of 8 sharing the daemon.
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
    process.stdout.write(`\nkatavol daemon RSS: ${fmt(rss1 / 1024, 1)} MiB with 1 container; ${fmt(rss8 / 1024, 1)} MiB shared by a pod of 8 (${fmt(rss8 / 8 / 1024, 1)} MiB per container)\n`);
    const goPids = pidsMatching(ctd.sock).filter((x) => fs.readFileSync(`/proc/${x}/cmdline`, 'utf8').startsWith('/usr/bin/containerd-shim-runc-v2'));
    if (goPids.length) process.stdout.write(`(for scale: a containerd-shim-runc-v2 daemon here uses ${fmt(rss(goPids[0]) / 1024, 1)} MiB)\n`);
  } finally {
    await ctd.stop();
  }

  // 4. Create interception in-process: resolve + backend + spec rewrite, 1 and 64 volumes.
  process.stdout.write('\nCreate interception (resolve, host checks, backend, atomic config.json rewrite), median of 9:\n');
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
        const dir = tmpDir('katavol-bench-create-');
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
}

export const section: Section = { name: 'shim', title: 'katavol shim overhead vs the direct runc shim (private containerd)', run };
