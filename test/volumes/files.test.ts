import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { TEMP_PREFIX, UnreadableFileError, errnoOf, fsyncDir, kindOf, lstatOrUndefined, readRegularFile, tempName, writeFileAtomic, writeNewFileSync } from '../../src/volumes/files';
import { scratchDir, snapshot } from '../support/scratch';
import { withTmpfs } from '../support/disks';
import { closeServer, listeningSocket } from '../support/volumes';

/** This process's open file descriptors. */
const openFds = (): string[] => fs.readdirSync('/proc/self/fd').sort();

function unreadable(fn: () => unknown): UnreadableFileError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof UnreadableFileError, `expected UnreadableFileError, got ${String(e)}`);
    assert.strictEqual(e.name, 'UnreadableFileError');
    assert.strictEqual(e.message, `${e.file} ${e.problem}`);
    return e;
  }
  assert.fail('expected an UnreadableFileError');
}

describe('volumes/files', () => {
  let scratch: string;
  beforeEach(() => (scratch = scratchDir('files')));
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('temp names carry katavol\'s prefix, the kind and the pid, and never repeat', () => {
    const a = tempName('new');
    assert.match(a, new RegExp(`^\\${TEMP_PREFIX}new-${process.pid}-[0-9a-f]{12}$`));
    assert.strictEqual(TEMP_PREFIX, '.katavol-');
    assert.notStrictEqual(tempName('new'), a);
  });

  it('writeNewFileSync writes a new file with its mode (0600 by default), text or bytes, and refuses an existing one', () => {
    const text = path.join(scratch, 'text');
    writeNewFileSync(text, 'héllo');
    assert.strictEqual(fs.readFileSync(text, 'utf8'), 'héllo');
    assert.strictEqual(fs.statSync(text).mode & 0o777, 0o600);
    const bytes = path.join(scratch, 'bytes');
    writeNewFileSync(bytes, new Uint8Array([0, 1, 255]), 0o640);
    assert.deepStrictEqual([...fs.readFileSync(bytes)], [0, 1, 255]);
    assert.strictEqual(fs.statSync(bytes).mode & 0o777, 0o640);
    assert.throws(() => writeNewFileSync(text, 'again'), (e) => errnoOf(e) === 'EEXIST');
    assert.strictEqual(fs.readFileSync(text, 'utf8'), 'héllo');
  });

  it('writeFileAtomic replaces a file whole (mode 0600 unless given), durable or not, leaving no temp file', () => {
    const target = path.join(scratch, 'target');
    fs.writeFileSync(target, 'old content that is longer', { mode: 0o644 });
    for (const durable of [undefined, true, false]) {
      writeFileAtomic(target, `new ${String(durable)}`, durable === undefined ? {} : { durable });
      assert.strictEqual(fs.readFileSync(target, 'utf8'), `new ${String(durable)}`);
      assert.strictEqual(fs.statSync(target).mode & 0o777, 0o600);
    }
    writeFileAtomic(target, Buffer.from('bytes'), { mode: 0o644, durable: false });
    assert.strictEqual(fs.statSync(target).mode & 0o777, 0o644);
    writeFileAtomic(target, 'durable', { mode: 0o640 });
    assert.strictEqual(fs.statSync(target).mode & 0o777, 0o640);
    assert.deepStrictEqual(fs.readdirSync(scratch), ['target']);
  });

  it('writeFileAtomic builds the new file in tempDir when given, else beside the target, and cleans it up on failure', () => {
    const dir = path.join(scratch, 'dir');
    const tmp = path.join(scratch, 'tmp');
    fs.mkdirSync(dir);
    fs.mkdirSync(tmp);
    // The rename fails (the target is a non-empty directory): the temp file must go, wherever it was.
    fs.mkdirSync(path.join(dir, 'busy'));
    fs.writeFileSync(path.join(dir, 'busy', 'x'), '');
    const before = snapshot(scratch);
    for (const durable of [true, false]) {
      assert.throws(() => writeFileAtomic(path.join(dir, 'busy'), 'x', { tempDir: tmp, durable }), (e) => errnoOf(e) === 'EISDIR' || errnoOf(e) === 'ENOTEMPTY');
      assert.throws(() => writeFileAtomic(path.join(dir, 'busy'), 'x', { durable }), (e) => errnoOf(e) === 'EISDIR' || errnoOf(e) === 'ENOTEMPTY');
    }
    assert.deepStrictEqual(snapshot(scratch), before);
    // A temp dir on another file system cannot be renamed from (EXDEV): proof of where the temp file is made.
    const other = path.join(scratch, 'other-fs');
    withTmpfs(other, () => {
      assert.throws(() => writeFileAtomic(path.join(dir, 'f'), 'x', { tempDir: other }), (e) => errnoOf(e) === 'EXDEV');
      assert.deepStrictEqual(fs.readdirSync(other), []);
      writeFileAtomic(path.join(other, 'f'), 'beside');
      assert.deepStrictEqual(fs.readdirSync(other), ['f']);
    }, 'size=1m');
  });

  it('writeFileAtomic passes on the first failure as it was (here: no directory to write in)', () => {
    const target = path.join(scratch, 'missing-dir', 'f');
    for (const durable of [true, false]) {
      assert.throws(() => writeFileAtomic(target, 'x', { durable }), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'open');
    }
    assert.deepStrictEqual(fs.readdirSync(scratch), []);
  });

  it('closes every file descriptor it opens, also on failure', () => {
    const file = path.join(scratch, 'f');
    fs.writeFileSync(file, 'content');
    const fifo = path.join(scratch, 'fifo');
    assert.strictEqual(spawnSync('mkfifo', [fifo]).status, 0);
    const before = openFds();
    fsyncDir(scratch);
    writeNewFileSync(path.join(scratch, 'n'), 'x');
    writeFileAtomic(file, 'y');
    readRegularFile(file, { maxBytes: 100 });
    unreadable(() => readRegularFile(file, { maxBytes: 0 }));
    unreadable(() => readRegularFile(fifo, { maxBytes: 100 }));
    assert.throws(() => writeNewFileSync(path.join(scratch, 'n'), 'x'));
    assert.deepStrictEqual(openFds(), before);
  });

  it('errnoOf gives the code of a failed fs call, and undefined for anything else', () => {
    let err: unknown;
    try {
      fs.readFileSync(path.join(scratch, 'missing'));
    } catch (e) {
      err = e;
    }
    assert.strictEqual(errnoOf(err), 'ENOENT');
    for (const v of [new Error('plain'), null, undefined, 'text', 7]) assert.strictEqual(errnoOf(v), undefined);
  });

  it('lstatOrUndefined: the entry itself (links not followed), undefined when nothing is there, other errors thrown', () => {
    const link = path.join(scratch, 'link');
    fs.symlinkSync('/nonexistent', link);
    assert.ok(lstatOrUndefined(link)?.isSymbolicLink());
    assert.ok(lstatOrUndefined(scratch)?.isDirectory());
    assert.strictEqual(lstatOrUndefined(path.join(scratch, 'missing')), undefined);
    fs.writeFileSync(path.join(scratch, 'file'), '');
    assert.strictEqual(lstatOrUndefined(path.join(scratch, 'file', 'below')), undefined, 'a file in the way (ENOTDIR)');
    assert.throws(() => lstatOrUndefined(path.join(scratch, 'x'.repeat(300))), (e) => errnoOf(e) === 'ENAMETOOLONG');
  });

  it('kindOf names what a path is', async () => {
    const sock = path.join(scratch, 'sock');
    const server = await listeningSocket(sock);
    try {
      const fifo = path.join(scratch, 'fifo');
      assert.strictEqual(spawnSync('mkfifo', [fifo]).status, 0);
      fs.writeFileSync(path.join(scratch, 'file'), '');
      fs.symlinkSync('file', path.join(scratch, 'link'));
      const block = fs.readdirSync('/dev').map((n) => `/dev/${n}`).find((p) => fs.lstatSync(p).isBlockDevice());
      const cases: Array<[string, string]> = [
        [path.join(scratch, 'file'), 'a regular file'], [scratch, 'a directory'], ['/dev/null', 'a character device'],
        [sock, 'a unix socket'], [fifo, 'a FIFO'], [path.join(scratch, 'link'), 'a symbolic link'],
      ];
      if (block) cases.push([block, 'a block device']);
      for (const [p, kind] of cases) assert.strictEqual(kindOf(fs.lstatSync(p)), kind, p);
      const none = { isFile: () => false, isDirectory: () => false, isBlockDevice: () => false, isCharacterDevice: () => false, isSocket: () => false, isFIFO: () => false, isSymbolicLink: () => false } as fs.Stats;
      assert.strictEqual(kindOf(none), 'an unusual file');
    } finally {
      await closeServer(server);
    }
  });

  it('readRegularFile reads a regular file up to maxBytes, and nothing that is not one', async () => {
    const file = path.join(scratch, 'f');
    fs.writeFileSync(file, 'héllo');
    assert.strictEqual(readRegularFile(file, { maxBytes: 6 }), 'héllo', 'exactly maxBytes bytes');
    assert.strictEqual(readRegularFile(path.join(scratch, 'empty-name-missing'), { maxBytes: 6 }), undefined);
    assert.strictEqual(readRegularFile(path.join(file, 'below'), { maxBytes: 6 }), undefined, 'a file in the way (ENOTDIR)');
    fs.writeFileSync(path.join(scratch, 'empty'), '');
    assert.strictEqual(readRegularFile(path.join(scratch, 'empty'), { maxBytes: 6 }), '');
    assert.strictEqual(unreadable(() => readRegularFile(file, { maxBytes: 5 })).problem, 'is 6 bytes, more than the 5 katavol reads from it');

    const link = path.join(scratch, 'link');
    fs.symlinkSync('f', link);
    const e = unreadable(() => readRegularFile(link, { maxBytes: 100 }));
    assert.deepStrictEqual([e.file, e.problem], [link, 'is a symbolic link; katavol does not follow links here']);
    assert.strictEqual(readRegularFile(link, { maxBytes: 100, follow: true }), 'héllo');
    fs.symlinkSync('loop-b', path.join(scratch, 'loop-a'));
    fs.symlinkSync('loop-a', path.join(scratch, 'loop-b'));
    assert.strictEqual(unreadable(() => readRegularFile(path.join(scratch, 'loop-a'), { maxBytes: 100, follow: true })).problem, 'is a loop of symbolic links');

    // Never blocks on a FIFO without a writer; a directory, a device and a socket are named.
    const fifo = path.join(scratch, 'fifo');
    assert.strictEqual(spawnSync('mkfifo', [fifo]).status, 0);
    assert.strictEqual(unreadable(() => readRegularFile(fifo, { maxBytes: 100 })).problem, 'is a FIFO, not a regular file');
    assert.strictEqual(unreadable(() => readRegularFile(scratch, { maxBytes: 100 })).problem, 'is a directory, not a regular file');
    assert.strictEqual(unreadable(() => readRegularFile('/dev/zero', { maxBytes: 100 })).problem, 'is a character device, not a regular file');
    const sock = path.join(scratch, 'sock');
    const server = await listeningSocket(sock);
    try {
      assert.strictEqual(unreadable(() => readRegularFile(sock, { maxBytes: 100 })).problem, 'is a unix socket, not a regular file');
    } finally {
      await closeServer(server);
    }
    // Other failures are the fs error itself.
    assert.throws(() => readRegularFile(path.join(scratch, 'x'.repeat(300)), { maxBytes: 100 }), (err) => errnoOf(err) === 'ENAMETOOLONG');
  });

  it('readRegularFile stops at maxBytes when a file holds more than its size says (it grew while being read)', () => {
    // /proc files report size 0 but have content: the same as a file that grew after the fstat.
    assert.strictEqual(unreadable(() => readRegularFile('/proc/self/status', { maxBytes: 0 })).problem, 'grew past 0 bytes while katavol read it');
  });
});
