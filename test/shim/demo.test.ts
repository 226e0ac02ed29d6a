// `make demo` is the README's first command: it must keep working and clean up after itself.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { REPO } from '../support/containerd';

describe('make demo (scripts/demo.sh)', () => {
  it('runs a container through the shim that writes into a direct volume, reads it back, and leaves nothing', () => {
    const before = new Set(fs.readdirSync('/tmp').filter((f) => f.startsWith('katavol-demo-')));
    const r = spawnSync(path.join(REPO, 'scripts', 'demo.sh'), { encoding: 'utf8', timeout: 120000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /inside: mount: .* \/disk .* - ext4 \/dev\/loop\d+ rw/);
    assert.match(r.stdout, /\$ debugfs -R 'cat \/hello.txt' disk.img\n {3}hello from a katavol direct volume\n/);
    assert.match(r.stdout, /no loop device left attached/);
    const after = fs.readdirSync('/tmp').filter((f) => f.startsWith('katavol-demo-') && !before.has(f));
    assert.deepEqual(after, [], 'the demo removed its work directory');
  });
});
