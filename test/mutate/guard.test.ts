// `make mutate` runs mutated loop-device and unmount code, so it refuses to start beside anything else
// that uses loop devices (scripts/mutate-guard.sh).
import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { LoopFixture, mkExt4 } from '../support/disks';
import { scratchDir } from '../support/scratch';

const GUARD = path.join(__dirname, '..', '..', '..', 'scripts', 'mutate-guard.sh');

describe('make mutate: refuses to start while loop devices are attached', function () {
  let scratch: string;
  const fx = new LoopFixture();
  beforeEach(() => (scratch = scratchDir('mutate-guard')));
  afterEach(async () => {
    await fx.cleanup();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('names each attached device and its image, says why, and how to override', () => {
    const img = mkExt4(scratch, 'someone-elses.img', 8 << 20);
    const dev = fx.attach(img);
    const r = spawnSync(GUARD, [], { encoding: 'utf8', env: { ...process.env, KATAVOL_MUTATE_SHARED: '' } });
    assert.strictEqual(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^make mutate: loop devices are attached on this machine:\\n`));
    assert.match(r.stderr, new RegExp(`\\n  ${dev}\\s+${img}\\n`));
    assert.match(r.stderr, /a mutant of a guard can take one of these/);
    assert.match(r.stderr, /set KATAVOL_MUTATE_SHARED=1 if they are all yours\n$/);
  });

  it('KATAVOL_MUTATE_SHARED=1 lets it start anyway', () => {
    fx.attach(mkExt4(scratch, 'mine.img', 8 << 20));
    const r = spawnSync(GUARD, [], { encoding: 'utf8', env: { ...process.env, KATAVOL_MUTATE_SHARED: '1' } });
    assert.strictEqual(r.status, 0, r.stderr);
    assert.strictEqual(r.stderr, '');
  });
});
