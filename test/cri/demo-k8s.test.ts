// `make demo-k8s` shows a newcomer the Kubernetes flow: it must keep working and clean up after itself.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { REPO } from '../support/containerd';

describe('make demo-k8s (scripts/demo-k8s.ts)', () => {
  it('runs a katavol pod whose app and sidecar share a volume, shows a second pod refused, and leaves nothing', () => {
    const r = spawnSync(process.execPath, [path.join(REPO, 'dist', 'scripts', 'demo-k8s.js')], { encoding: 'utf8', timeout: 180000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /runtime_type = "io\.containerd\.katavol\.v2"/);
    const seen = [...r.stdout.matchAll(/(app|sidecar) sees: +(ext4 \/dev\/loop\d+) rw/g)];
    assert.equal(seen.length, 2, r.stdout);
    assert.equal(seen[0][2], seen[1][2], 'app and sidecar mount the same loop device');
    assert.match(r.stdout, /ExecSync in the sidecar: cat \/data\/log\.txt -> written by the app/);
    assert.match(r.stdout, /StartContainer: code 9: .*is already in use by pod default\/demo \(sandbox [0-9a-f]{64}, read-write, \/dev\/loop\d+\); a read-write volume belongs to one pod at a time/);
    assert.match(r.stdout, /debugfs -R 'cat \/log\.txt' pvc-data\.img\n {5}written by the app\n {5}and by the sidecar\n/);
    assert.match(r.stdout, /nothing left: /);
    const dir = /everything lives under (\S+)/.exec(r.stdout)?.[1];
    assert.ok(dir, r.stdout);
    assert.equal(fs.existsSync(dir), false, `the demo removed ${dir}`);
  });
});
