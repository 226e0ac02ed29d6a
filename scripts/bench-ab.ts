// A/B of the proxy's per-call cost between builds: `node dist/scripts/bench-ab.js <repo A> <repo B> ...`
// (each a built katavol checkout; name one twice for an A/A control of the noise). One private containerd
// runs one container through each build's launcher (runc backend, no volume, cold start), and task State
// is timed through each build's daemon and straight to its runc shim, in interleaved rounds
// (scripts/bench/state-calls.ts), so every build sees the same load. Compares each build with A round by
// round: what the daemon adds over its own direct path, its p50, and its CPU time per call (beside the runc
// shim's own).
// AB_ROUNDS (default 12) rounds of AB_CALLS (default 2000) calls per path; AB_NODE_OPTIONS reaches the
// daemons (e.g. --require a profiler preload).
import * as fs from 'fs';
import * as path from 'path';
import type { BundleState } from '../src/shim/state';
import { PrivateContainerd, makeRootfs, tmpDir } from '../test/support/containerd';
import { fmt, median, printTable } from './bench/section';
import { loadAverage, perRound, quantile, runcShimPid, stateRounds, type StatePath } from './bench/state-calls';

const ROUNDS = Number(process.env.AB_ROUNDS ?? '12');
const CALLS = Number(process.env.AB_CALLS ?? '2000');

const range = (xs: number[], d = 0): string => `${fmt(Math.min(...xs), d)}..${fmt(Math.max(...xs), d)}`;
const above = (xs: number[], than: number): string => `${xs.filter((x) => x > than).length}/${xs.length}`;

async function main(repos: string[]): Promise<void> {
  if (repos.length < 2) throw new Error('usage: bench-ab.js <repo A> <repo B> [...] (each a built katavol checkout)');
  const work = tmpDir('katavol-ab-');
  const sockDir = fs.mkdtempSync('/dev/shm/kvab-');
  const ctd = await PrivateContainerd.start({ stateOnTmpfs: true });
  try {
    const rootfs = makeRootfs(work);
    const paths: StatePath[] = []; // per build: direct, then through katavol
    const names = repos.map((_, i) => String.fromCharCode(65 + i));
    for (const [i, repo] of repos.entries()) {
      const shim = path.join(path.resolve(repo), 'bin', 'containerd-shim-katavol-v2');
      const cfg = path.join(work, `cfg${i}.json`);
      fs.writeFileSync(cfg, JSON.stringify({ backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2', socketDir: path.join(sockDir, String(i)), warmDaemons: 0 }));
      const nodeOpts = process.env.AB_NODE_OPTIONS ? `NODE_OPTIONS='${process.env.AB_NODE_OPTIONS}' ` : '';
      const wrapper = path.join(work, `shim${i}`);
      fs.writeFileSync(wrapper, `#!/bin/sh\n${nodeOpts}KATAVOL_CONFIG=${cfg} exec ${shim} "$@"\n`, { mode: 0o755 });
      const id = `ab${i}`;
      const r = ctd.ctr(['run', '-d', '--runtime', wrapper, '--rootfs', rootfs, id, '/bin/sh', '-c', 'sleep 3600']);
      if (r.status !== 0) throw new Error(`${repo}: ctr run -d failed: ${r.stderr}`);
      const st = JSON.parse(fs.readFileSync(path.join(ctd.bundleOf(id), 'katavol.json'), 'utf8')) as BundleState;
      paths.push({ label: `${names[i]} direct`, socket: st.downstreamAddress, id, pid: st.downstreamPid ?? runcShimPid(ctd, id) }, { label: `${names[i]} katavol`, socket: st.address, id, pid: st.daemonPid });
      process.stdout.write(`${names[i]} = ${repo} (daemon pid ${st.daemonPid})\n`);
    }
    const load0 = loadAverage();
    const figs = await stateRounds(paths, ROUNDS, CALLS);
    process.stdout.write(`\nTask.State, ${ROUNDS} interleaved rounds x ${CALLS} sequential calls per path; load average ${load0} -> ${loadAverage()}\n`);
    const rows: Array<Array<string | number>> = [];
    const added = repos.map((_, b) => perRound(figs[2 * b + 1].p50, figs[2 * b].p50));
    for (const [j, p] of paths.entries()) {
      const f = figs[j];
      rows.push([p.label, fmt(median(f.p50), 1), range(f.p50, 1), fmt(median(f.p99)), range(f.p99), fmt(quantile(f.all, 0.5), 1), fmt(quantile(f.all, 0.99)),
        f.cpu.length ? fmt(median(f.cpu), 1) : '', f.cpu.length ? range(f.cpu, 1) : '']);
      if (j % 2) rows.push([`${names[j >> 1]} added (per round)`, fmt(median(added[j >> 1]), 1), range(added[j >> 1], 1), '', '', '', '', '', '']);
    }
    printTable(['path', 'p50 us (median of rounds)', 'p50 range', 'p99 us', 'p99 range', 'pooled p50', 'pooled p99', 'server CPU us/call', 'CPU range'], rows);
    process.stdout.write('\nEach build against A, round by round:\n');
    const cmp: Array<Array<string | number>> = [];
    for (let b = 1; b < repos.length; b++) {
      const dAdded = perRound(added[b], added[0]);
      const ratio = perRound(figs[2 * b + 1].p50, figs[1].p50, (x, y) => x / y);
      const cpu = perRound(figs[2 * b + 1].cpu, figs[1].cpu, (x, y) => x / y);
      cmp.push([`${names[b]} - A, added p50 us`, fmt(median(dAdded), 1), range(dAdded, 1), above(dAdded, 0)]);
      cmp.push([`${names[b]} / A, katavol p50`, fmt(median(ratio), 3), range(ratio, 3), above(ratio, 1)]);
      cmp.push([`${names[b]} / A, daemon CPU per call`, fmt(median(cpu), 3), range(cpu, 3), above(cpu, 1)]);
    }
    printTable(['comparison', 'median', 'range', 'rounds above A'], cmp);
  } finally {
    await ctd.stop();
    fs.rmSync(sockDir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`bench-ab: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
