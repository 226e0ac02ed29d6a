// Benchmark runner (`make bench` = `node dist/scripts/bench.js`): runs each section in order and prints
// its figures. `node dist/scripts/bench.js ttrpc startup` runs only the named sections.
// Adding a section: write scripts/bench/<name>.ts exporting `section: Section`, add one line below.
import * as fs from 'fs';
import type { Section } from './bench/section';

const SECTIONS: Array<{ name: string; load(): Section }> = [
  { name: 'ttrpc', load: () => (require('./bench/ttrpc') as typeof import('./bench/ttrpc')).section },
  { name: 'startup', load: () => (require('./bench/startup') as typeof import('./bench/startup')).section },
  { name: 'shim', load: () => (require('./bench/shim') as typeof import('./bench/shim')).section },
  { name: 'csi', load: () => (require('./bench/csi') as typeof import('./bench/csi')).section },
];

/** 1, 5 and 15-minute load averages. */
const loadAverages = (): string => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

async function main(argv: string[]): Promise<number> {
  const names = SECTIONS.map((s) => s.name);
  const unknown = argv.filter((a) => !names.includes(a));
  if (unknown.length) {
    process.stderr.write(`bench: unknown section(s) ${unknown.join(', ')}; sections are: ${names.join(', ')}\n`);
    return 2;
  }
  let failed = 0;
  for (const entry of SECTIONS.filter((s) => argv.length === 0 || argv.includes(s.name))) {
    try {
      const section = entry.load();
      // The machine may be shared: every figure below is read against the load it was taken under.
      process.stdout.write(`\n== ${section.name}: ${section.title} (load average ${loadAverages()})\n`);
      await section.run();
      process.stdout.write(`(${section.name}: load average at the end ${loadAverages()})\n`);
    } catch (err) {
      failed++;
      process.stderr.write(`bench: section ${entry.name} failed: ${(err as Error).stack ?? String(err)}\n`);
    }
  }
  return failed ? 1 : 0;
}

void main(process.argv.slice(2)).then((code) => process.exit(code));
