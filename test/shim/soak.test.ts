// The small soak of `make test`: the same churn as `make soak` at 40 container runs, 4 at a time.
import { strict as assert } from 'assert';
import { formatSoak, runSoak } from '../support/soak';

describe('soak (40 container runs, 4 at a time; make soak runs 200/8)', function () {
  this.timeout(600000);
  it('runs every kind of container, loses no token, leaves no process, loop device, socket, record or task', async function () {
    const r = await runSoak({ containers: 40, parallel: 4 });
    assert.deepEqual(r.problems, [], formatSoak(r));
    assert.deepEqual(r.byKind, { none: 10, rw: 10, ro: 10, pod: 10 });
    assert.equal(r.tokensChecked, 20, 'one token per rw container and per pod');
    assert.equal(r.imagesChecked, 21, 'every image, the shared one included, is clean');
  });
});
