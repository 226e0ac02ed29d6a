// Child process for the concurrency test: hammers one volume with add/remove/record/release, or
// (role "check") reads it until a stop file appears and reports any torn or half-removed state.
import * as fs from 'fs';
import { Registry } from '../../src/volumes/registry';
import { VolumeError } from '../../src/volumes/types';

const [role, root, volumePath, device, countOrStop, id] = process.argv.slice(2);
const reg = new Registry(root);
const expected = (e: unknown): boolean => e instanceof VolumeError && /is not registered/.test(e.problem);
const problems: string[] = [];

if (role === 'write') {
  const n = Number(countOrStop);
  for (let i = 0; i < n; i++) {
    try {
      switch (i % 4) {
        // --force: this test is about torn state, not the refusal to change a volume in use.
        case 0: reg.addWithResult(volumePath, JSON.stringify({ 'volume-type': 'directvol', device, fstype: 'ext4', metadata: { writer: id, i: String(i) } }), { force: true }); break;
        case 1: reg.recordSandbox(volumePath, `sb-${id}`, 'runc'); break;
        case 2: reg.releaseSandbox(volumePath, `sb-${id}`); break;
        default: reg.remove(volumePath, { force: true });
      }
    } catch (e) {
      if (!expected(e)) problems.push(String((e as Error).stack ?? e));
    }
  }
} else {
  let reads = 0;
  while (!fs.existsSync(countOrStop) || reads === 0) {
    reads++;
    try {
      if (reg.isRegistered(volumePath)) {
        const r = reg.read(volumePath);
        if (!r.canonical) problems.push(`non-canonical content: ${r.raw}`);
      }
    } catch (e) {
      if (!expected(e)) problems.push(String((e as Error).message));
    }
  }
}
process.stdout.write(JSON.stringify(problems));
