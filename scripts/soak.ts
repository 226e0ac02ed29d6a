// `make soak [N=200] [P=8]`: churn N containers through a private containerd and the katavol shim, P at
// a time, then check that nothing was lost or left (see test/support/soak.ts); prints the figures.
import { FAULTS, explainedFailure, type Fault, formatSoak, runSoak } from '../test/support/soak';

function flag(name: string, dflt: number, min = 1): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < min) {
    process.stderr.write(`soak: --${name} must be an integer from ${min}\n`);
    process.exit(2);
  }
  return v;
}

async function main(): Promise<number> {
  const containers = flag('containers', 200);
  const parallel = flag('parallel', 8);
  // Warm daemons in the pool (the shim config's warmDaemons); without --warm, the config's default.
  const warmDaemons = process.argv.includes('--warm') ? flag('warm', 1, 0) : undefined;
  process.stdout.write(`soak: ${containers} container runs, ${parallel} at a time (private containerd, runc backend, warmDaemons ${warmDaemons ?? '1 (default)'})\n`);
  // The plain churn, then the churn again with each fault (--faults none skips them).
  const fi = process.argv.indexOf('--faults');
  const wanted = fi >= 0 ? process.argv[fi + 1].split(',').filter((f) => f && f !== 'none') : [...FAULTS];
  const bad = wanted.filter((f) => !(FAULTS as readonly string[]).includes(f));
  if (bad.length) {
    process.stderr.write(`soak: unknown fault(s) ${bad.join(', ')}; faults are: ${FAULTS.join(', ')}\n`);
    return 2;
  }
  let failed = 0;
  for (const fault of [undefined, ...(wanted as Fault[])]) {
    process.stdout.write(`\n== soak ${fault ? `with fault ${fault}` : 'without faults'}\n`);
    const r = await runSoak({ containers, parallel, fault, warmDaemons, log: (l) => process.stdout.write(`${l}\n`) });
    process.stdout.write(`${formatSoak(r)}\n`);
    const unexplained = r.faultFailures.filter((f) => !explainedFailure(f));
    for (const u of unexplained) process.stdout.write(`unexplained failure: ${u}\n`);
    if (r.problems.length || unexplained.length) failed++;
  }
  process.stdout.write(`\nsoak: ${failed ? `${failed} run(s) FAILED` : 'all runs passed'}\n`);
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`soak: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
