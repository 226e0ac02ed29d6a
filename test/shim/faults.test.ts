// Faults injected into a small churn (make soak runs each at 200/8): containerd restarted with SIGTERM
// and with SIGKILL, containerd stopped while a start is in flight, katavol daemons and downstream shims
// SIGKILLed. A run a fault cuts short may fail, but only with what ctr prints when its peer went away;
// every run that printed its token back has it on disk, every image is clean, and after a user deleted
// what ctr left, nothing katavol or the downstream made is left.
import { strict as assert } from 'assert';
import { FAULTS, explainedFailure, formatSoak, runSoak } from '../support/soak';

describe('faults during churn (12 container runs, 4 at a time, per fault)', function () {
  this.timeout(600000);
  for (const fault of FAULTS) {
    it(`${fault}: failures are the expected ones, no token lost, nothing left`, async function () {
      const r = await runSoak({ containers: 12, parallel: 4, fault });
      assert.deepEqual(r.problems, [], formatSoak(r));
      assert.ok(r.faultsInjected >= 1, `the fault was injected\n${formatSoak(r)}`);
      assert.deepEqual(r.faultFailures.filter((f) => !explainedFailure(f)), [], formatSoak(r));
      // image-gone: of its two containers' images, the one deleted is not checked, the detached one is.
      assert.equal(r.imagesChecked, fault === 'image-gone' ? 8 : 7);
    });
  }
});
