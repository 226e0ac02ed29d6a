// The src/ttrpc codec group of stryker.config.json against the ttrpc suites only:
//   node_modules/.bin/stryker run test/mutate/stryker.ttrpc.mjs --force
// The codec's mutants of module-level code (constants, the Code enum, the errno table) are "static":
// Stryker runs every suite of the config for each of them, which with make mutate's suites (loop devices,
// real files) takes about two hours for this group; with these, about ten minutes. The ttrpc suites
// attach no loop device and mount nothing, so this needs no loop lock.
import { readFileSync } from 'fs';

const base = JSON.parse(readFileSync(new URL('../../stryker.config.json', import.meta.url), 'utf8'));
const out = 'node_modules/.cache/katavol-mutate/ttrpc';

export default {
  ...base,
  $schema: undefined,
  mutate: base.mutate.filter((f) => f.startsWith('src/ttrpc/')),
  mochaOptions: { config: 'test/mutate/mocharc.ttrpc.cjs' },
  incrementalFile: `${out}/incremental.json`,
  tempDirName: `${out}/tmp`,
  htmlReporter: { fileName: `${out}/report.html` },
  jsonReporter: { fileName: `${out}/report.json` },
};
