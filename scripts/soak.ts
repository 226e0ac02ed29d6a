// `make soak [N=200] [P=8]`: churn N containers through a private containerd and the katavol shim, P at
// a time, then check that nothing was lost or left (see test/support/soak.ts); prints the figures.
import { formatSoak, runSoak } from '../test/support/soak';

function flag(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`soak: --${name} must be a positive integer\n`);
    process.exit(2);
  }
  return v;
}

async function main(): Promise<number> {
  const containers = flag('containers', 200);
  const parallel = flag('parallel', 8);
  process.stdout.write(`soak: ${containers} container runs, ${parallel} at a time (private containerd, runc backend)\n`);
  const r = await runSoak({ containers, parallel, log: (l) => process.stdout.write(`${l}\n`) });
  process.stdout.write(`${formatSoak(r)}\n`);
  return r.problems.length ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`soak: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
