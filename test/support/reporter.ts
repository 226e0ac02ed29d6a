// Mocha's spec reporter plus one plain closing line, "N passed, N failed[, N skipped]",
// which CI reads (mocha's own summary says "passing"/"failing").
import Mocha = require('mocha');

class KatavolReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const s = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
      // Printed after the spec reporter's epilogue so it is the last line.
      process.nextTick(() => {
        const skipped = s.pending ? `, ${s.pending} skipped` : '';
        process.stdout.write(`${s.passes} passed, ${s.failures} failed${skipped}\n`);
      });
    });
  }
}

export = KatavolReporter;
