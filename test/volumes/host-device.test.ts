import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { findTool, runTool, toolPath } from '../../src/volumes/host-device';
import { VolumeError, messageOf } from '../../src/volumes/types';
import { removeDir, scratchDir } from '../support/scratch';

describe('volumes/host-device tools', () => {
  let dir: string;
  beforeEach(() => { dir = scratchDir('tools'); });
  afterEach(() => removeDir(dir));

  it('finds a tool on the PATH of the environment it is given, read at the call, not at load', () => {
    const tool = path.join(dir, 'katavol-probe-tool');
    fs.writeFileSync(tool, '#!/bin/sh\necho probed\n', { mode: 0o755 });
    assert.strictEqual(findTool('katavol-probe-tool', { PATH: dir }), tool);
    assert.strictEqual(findTool('katavol-probe-tool', { PATH: '/nonexistent' }), undefined);
    assert.strictEqual(runTool('/vol', 'katavol-probe-tool', [], 'probe', { PATH: dir }).stdout, 'probed\n');
  });

  it('looks in /usr/sbin and /sbin after the PATH, which a non-login shell may lack', () => {
    assert.strictEqual(toolPath({ PATH: '/opt/x' }), '/opt/x:/usr/sbin:/sbin:/usr/bin:/bin');
    const found = findTool('losetup', { PATH: '' });
    assert.ok(found === '/usr/sbin/losetup' || found === '/sbin/losetup', `losetup found at ${found}`);
    const r = runTool('/vol', 'sh', ['-c', 'echo "$PATH"'], 'dash', { PATH: '/opt/x' });
    assert.strictEqual(r.stdout.trim(), '/opt/x:/usr/sbin:/sbin:/usr/bin:/bin');
  });

  it('a tool that is not installed is a VolumeError naming the package, with the spawn error as its cause', () => {
    let err: unknown;
    try {
      runTool('/kubelet/vol1', 'katavol-no-such-tool', [], 'katavol-pkg', { PATH: dir });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof VolumeError, `got ${messageOf(err)}`);
    assert.match(err.message, /^volume "\/kubelet\/vol1": cannot run katavol-no-such-tool: .*ENOENT.*; install katavol-pkg \(apt-get install katavol-pkg\)$/);
    assert.strictEqual((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
  });
});

describe('volumes/types messageOf', () => {
  it('renders any thrown value: an Error by its message, anything else by its string form', () => {
    assert.strictEqual(messageOf(new RangeError('out of range')), 'out of range');
    assert.strictEqual(messageOf('plain text'), 'plain text');
    assert.strictEqual(messageOf(42), '42');
    assert.strictEqual(messageOf(undefined), 'undefined');
    assert.strictEqual(messageOf(null), 'null');
    assert.strictEqual(messageOf({ message: 'an error from another realm' }), 'an error from another realm');
  });

  it('a VolumeError keeps what failed underneath as its cause, and has none when nothing did', () => {
    const under = new Error('EACCES: permission denied');
    const e = new VolumeError('/v', 'cannot read it', 'fix it', '/f', under);
    assert.strictEqual(e.cause, under);
    assert.strictEqual(e.message, 'volume "/v": cannot read it (/f); fix it');
    assert.ok(!('cause' in new VolumeError('/v', 'p', 'f')));
  });
});
