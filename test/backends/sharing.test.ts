// The pod-scoped part of the sharing policy (src/backends/sharing.ts): a volume belongs to a sandbox,
// so a pod's own containers never clash with it, and a writer cannot join a read-only pod device.
import * as assert from 'assert';
import { clashingUsers, mayJoinPodDevice, otherSandboxes } from '../../src/backends/sharing';

describe('sharing policy: pod-scoped volumes (sharing.ts)', () => {
  const uses = [
    { id: 'pod-a', backend: 'runc', readOnly: false },
    { id: 'pod-b', backend: 'runc', readOnly: true },
  ];

  it('judges a claim against the other sandboxes only: the pod holding a volume read-write does not clash with itself', () => {
    assert.deepStrictEqual(otherSandboxes(uses, 'pod-a').map((u) => u.id), ['pod-b']);
    assert.deepStrictEqual(clashingUsers(false, otherSandboxes([uses[0]], 'pod-a')), [], 'a sidecar of pod-a may write it');
    assert.deepStrictEqual(clashingUsers(false, otherSandboxes([uses[0]], 'pod-c')).map((u) => u.id), ['pod-a'], 'another pod may not');
    assert.deepStrictEqual(clashingUsers(true, otherSandboxes(uses, 'pod-c')).map((u) => u.id), ['pod-a'], 'a reader clashes with the writer only');
  });

  it('lets readers join any pod device and writers only a writable one', () => {
    assert.strictEqual(mayJoinPodDevice(true, true), true);
    assert.strictEqual(mayJoinPodDevice(true, false), true);
    assert.strictEqual(mayJoinPodDevice(false, false), true);
    assert.strictEqual(mayJoinPodDevice(false, true), false);
  });
});
