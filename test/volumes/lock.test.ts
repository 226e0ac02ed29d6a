import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { type LockTarget, lockFileFor, withLock } from '../../src/volumes/lock';
import { VolumeError } from '../../src/volumes/types';
import { scratchDir } from '../support/scratch';
import { withTmpfs } from '../support/disks';

const VOL = '/kubelet/locked-vol';

/** The pid of a process that has exited. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString());
}

/** Sets a path's (a symbolic link's own) mtime `seconds` into the past. */
function age(p: string, seconds: number): void {
  const t = new Date(Date.now() - seconds * 1000);
  fs.lutimesSync(p, t, t);
}

describe('volumes/lock', () => {
  let scratch: string;
  let target: LockTarget;
  let file: string;

  beforeEach(() => {
    scratch = scratchDir('lock');
    target = { volumePath: VOL, lockDir: path.join(scratch, 'deep', 'locks'), entryName: 'L2t1YmVsZXQvbG9ja2VkLXZvbA==' };
    file = lockFileFor(target);
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  /** withLock with a short wait that must end in the "locked" refusal; returns it. */
  function refused(timeoutMs = 50): VolumeError {
    let ran = false;
    try {
      withLock(target, () => (ran = true), timeoutMs);
    } catch (e) {
      assert.ok(e instanceof VolumeError, String(e));
      assert.strictEqual(ran, false, 'fn never ran without the lock');
      assert.strictEqual(e.volumePath, VOL);
      assert.strictEqual(e.file, file);
      assert.strictEqual(e.fix, 'retry later; if no katavol or shim process is running, delete the lock file');
      return e;
    }
    assert.fail('expected the lock to be refused');
  }

  it('names one short lock file per entry in the lock directory', () => {
    assert.strictEqual(path.dirname(file), target.lockDir);
    assert.match(path.basename(file), /^[0-9a-f]{40}\.lock$/);
    assert.strictEqual(lockFileFor({ ...target, volumePath: '/other' }), file, 'the entry name alone decides');
    assert.notStrictEqual(lockFileFor({ ...target, entryName: 'b3RoZXI=' }), file);
  });

  it('holds the lock (a symbolic link naming this process) while fn runs, returns its result, and releases it after', () => {
    const result = withLock(target, () => {
      assert.ok(fs.lstatSync(file).isSymbolicLink());
      assert.match(fs.readlinkSync(file), new RegExp(`^${process.pid} [0-9a-f]{16}$`));
      return 42;
    });
    assert.strictEqual(result, 42);
    assert.deepStrictEqual(fs.readdirSync(target.lockDir), []);
    assert.strictEqual(fs.statSync(target.lockDir).mode & 0o777, 0o700, 'lock directory created 0700, parents included');
  });

  it('releases the lock when fn throws, and passes the error on', () => {
    const boom = new Error('boom');
    assert.throws(() => withLock(target, () => { throw boom; }), (e) => e === boom);
    assert.deepStrictEqual(fs.readdirSync(target.lockDir), []);
  });

  it('refuses a second holder of the same entry (naming the holder\'s pid and the wait), not of another entry', () => {
    withLock(target, () => {
      assert.strictEqual(refused().problem, `registry entry is locked by process ${process.pid} for more than 0s`);
      assert.strictEqual(withLock({ ...target, entryName: 'b3RoZXI=' }, () => 'other'), 'other');
    });
    assert.deepStrictEqual(fs.readdirSync(target.lockDir), []);
  });

  it('does not delete a lock that another process took over while fn ran, nor fail when it is gone', () => {
    withLock(target, () => {
      fs.rmSync(file);
      fs.symlinkSync('1 someone-else', file);
    });
    assert.strictEqual(fs.readlinkSync(file), '1 someone-else');
    fs.rmSync(file);
    assert.strictEqual(withLock(target, () => { fs.rmSync(file); return 'ok'; }), 'ok');
  });

  it('waits for a live holder in another process to let go', async () => {
    fs.mkdirSync(target.lockDir, { recursive: true });
    const script = `const fs = require('fs'); fs.symlinkSync(process.pid + ' child', ${JSON.stringify(file)});
      process.stdout.write('held'); setTimeout(() => fs.rmSync(${JSON.stringify(file)}), 300);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`holder exited ${code} before taking the lock`)));
      });
      assert.strictEqual(withLock(target, () => fs.readlinkSync(file).split(' ')[0], 30000), String(process.pid));
    } finally {
      if (child.exitCode === null) child.kill();
    }
  });

  it('breaks a lock whose owner died, in the symbolic-link form and in the older regular-file form', () => {
    const dead = deadPid();
    for (const make of [
      () => fs.symlinkSync(`${dead} 0123456789abcdef`, file),
      () => fs.writeFileSync(file, `${dead} 0123456789abcdef\n`),
    ]) {
      fs.mkdirSync(target.lockDir, { recursive: true });
      make();
      // Broken because its owner is gone, not for its age: well before the grace period ends.
      assert.strictEqual(withLock(target, () => fs.readlinkSync(file).startsWith(`${process.pid} `), 2000), true);
      assert.deepStrictEqual(fs.readdirSync(target.lockDir), [], 'no lock and no breaker left');
    }
  });

  it('keeps a lock file of a live owner in the older form too', () => {
    fs.mkdirSync(target.lockDir, { recursive: true });
    fs.writeFileSync(file, `${process.pid} someoneelse\n`);
    age(file, 60); // however long it has been held
    assert.strictEqual(refused().problem, `registry entry is locked by process ${process.pid} for more than 0s`);
    assert.strictEqual(fs.readFileSync(file, 'utf8'), `${process.pid} someoneelse\n`);
  });

  it('a lock without an owner (being written, or garbage) is kept for its grace period, then broken', () => {
    const dead = deadPid();
    // None of these names an owner: only their age tells whether they are abandoned.
    for (const content of ['', 'garbage', `x${dead} tok`, `${dead} tok extra`, `${dead}  tok`, `${dead} tok\n\n`]) {
      fs.mkdirSync(target.lockDir, { recursive: true });
      fs.writeFileSync(file, content);
      assert.strictEqual(refused().problem, 'registry entry is locked for more than 0s', JSON.stringify(content));
      assert.strictEqual(fs.readFileSync(file, 'utf8'), content, 'a fresh one is kept');
      age(file, 60);
      assert.strictEqual(withLock(target, () => 'broken'), 'broken', JSON.stringify(content));
      assert.deepStrictEqual(fs.readdirSync(target.lockDir), []);
    }
  });

  it('a lock that cannot be read (here a directory in its place) is never broken, only waited for', () => {
    fs.mkdirSync(file, { recursive: true });
    age(file, 60);
    assert.strictEqual(refused().problem, 'registry entry is locked for more than 0s');
    assert.ok(fs.statSync(file).isDirectory());
  });

  it('reports the wait in whole seconds', () => {
    fs.mkdirSync(target.lockDir, { recursive: true });
    fs.writeFileSync(file, `${process.pid} someoneelse\n`);
    assert.strictEqual(refused(1600).problem, `registry entry is locked by process ${process.pid} for more than 2s`);
  });

  it('breaks a dead owner\'s lock only through the breaker: a live breaker waits, a dead one is cleared after its grace period', () => {
    const dead = deadPid();
    const breaker = `${file}.break`;
    fs.mkdirSync(target.lockDir, { recursive: true });
    fs.symlinkSync(`${dead} stale`, file);

    // Another process is breaking it right now: wait for it (here: until the timeout).
    fs.symlinkSync(`${process.pid} breaking`, breaker);
    refused();
    assert.strictEqual(fs.readlinkSync(breaker), `${process.pid} breaking`);
    assert.strictEqual(fs.readlinkSync(file), `${dead} stale`);

    // A breaker whose owner died is left alone for the grace period (its creator may still be writing it)...
    fs.rmSync(breaker);
    fs.symlinkSync(`${dead} breaking`, breaker);
    refused();
    assert.strictEqual(fs.readlinkSync(breaker), `${dead} breaking`);
    // ...and so is an old breaker of a live owner: its owner may be slow, not gone.
    fs.rmSync(breaker);
    fs.writeFileSync(breaker, `${process.pid} breaking\n`);
    age(breaker, 60);
    refused();
    assert.ok(fs.existsSync(breaker));

    // A dead owner's breaker past its grace period is cleared, and then the lock is broken.
    fs.rmSync(breaker);
    fs.symlinkSync(`${dead} breaking`, breaker);
    age(breaker, 60);
    assert.strictEqual(withLock(target, () => 'mine'), 'mine');
    assert.deepStrictEqual(fs.readdirSync(target.lockDir), []);

    // A breaker that cannot be read (a directory in its place) is never cleared: it is waited for.
    fs.symlinkSync(`${dead} stale`, file);
    fs.mkdirSync(breaker);
    age(breaker, 60);
    refused();
    assert.ok(fs.statSync(breaker).isDirectory());
    fs.rmdirSync(breaker);
    fs.rmSync(file);

    // An old breaker without an owner too.
    fs.symlinkSync(`${dead} stale`, file);
    fs.writeFileSync(breaker, '');
    age(breaker, 60);
    assert.strictEqual(withLock(target, () => 'mine'), 'mine');
    assert.deepStrictEqual(fs.readdirSync(target.lockDir), []);
  });

  it('passes on a failure to create the lock other than "taken" (a read-only file system)', () => {
    const ro = path.join(scratch, 'ro');
    withTmpfs(ro, () => {
      assert.throws(() => withLock({ ...target, lockDir: ro }, () => 1, 1000), (e: NodeJS.ErrnoException) => e.code === 'EROFS' && e.syscall === 'symlink');
    }, 'ro');
  });
});
