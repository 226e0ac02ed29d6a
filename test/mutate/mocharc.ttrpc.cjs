// make mutate's suites (mocharc.json) that test src/ttrpc; see stryker.ttrpc.mjs.
const base = require('./mocharc.json');

module.exports = { ...base, spec: base.spec.filter((s) => s.startsWith('dist/test/ttrpc/')) };
