import * as assert from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { KATA_VOLUME_ROOT, LOCK_DIR_NAME, MOUNT_INFO_FILE, Registry, resolveVolumeRoot } from '../../src/volumes/registry';
import { encodeVolumePath } from '../../src/volumes/encoding';
import { lockFileFor, withLock } from '../../src/volumes/lock';
import { VolumeError } from '../../src/volumes/types';
import { imageFile } from '../support/disks';
import { scratchDir, snapshot } from '../support/scratch';

const VOL = '/kubelet/kata-direct-vol-002/directvol002';
const NAME = 'L2t1YmVsZXQva2F0YS1kaXJlY3Qtdm9sLTAwMi9kaXJlY3R2b2wwMDI=';

function expectVolumeError(fn: () => unknown, problem: RegExp): VolumeError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof VolumeError, `expected VolumeError, got ${String(e)}`);
    assert.match(e.problem, problem);
    return e;
  }
  assert.fail(`expected a VolumeError matching ${problem}`);
}

describe('volumes/registry', () => {
  let scratch: string;
  let root: string;
  let reg: Registry;
  let img: string;
  const json = (device: string, extra = ''): string => `{"volume-type":"directvol","device":"${device}","fstype":"ext4"${extra}}`;

  beforeEach(() => {
    scratch = scratchDir('reg');
    root = path.join(scratch, 'run', 'direct-volumes');
    reg = new Registry(root);
    img = imageFile(scratch);
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('resolves the root: env KATAVOL_VOLUME_ROOT > configured > Kata default', () => {
    const saved = process.env.KATAVOL_VOLUME_ROOT;
    try {
      delete process.env.KATAVOL_VOLUME_ROOT;
      assert.strictEqual(resolveVolumeRoot(), KATA_VOLUME_ROOT);
      assert.strictEqual(resolveVolumeRoot('/etc/x'), '/etc/x');
      process.env.KATAVOL_VOLUME_ROOT = '/env/root';
      assert.strictEqual(resolveVolumeRoot('/etc/x'), '/env/root');
    } finally {
      if (saved === undefined) delete process.env.KATAVOL_VOLUME_ROOT;
      else process.env.KATAVOL_VOLUME_ROOT = saved;
    }
  });

  it('writes Kata\'s layout byte for byte: encoded dir 0700, compact canonical mountInfo.json 0600', () => {
    const r = reg.addWithResult(VOL, `{"volume_type":"directvol","device":"${img}","fs_type":"ext4","metadata":"{}","options":null,"x":1}`);
    assert.strictEqual(r.action, 'added');
    const dir = path.join(root, NAME);
    assert.strictEqual(reg.entryDir(VOL), dir);
    assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o700);
    const file = path.join(dir, MOUNT_INFO_FILE);
    assert.strictEqual(fs.statSync(file).mode & 0o777, 0o600);
    assert.strictEqual(fs.readFileSync(file, 'utf8'), `{"volume-type":"directvol","device":"${img}","fstype":"ext4"}`);
    assert.deepStrictEqual(fs.readdirSync(dir), [MOUNT_INFO_FILE]);
    assert.deepStrictEqual(fs.readdirSync(root).filter((n) => n !== LOCK_DIR_NAME), [NAME]);
    assert.deepStrictEqual(fs.readdirSync(path.join(root, LOCK_DIR_NAME)), [], 'lock released');
    assert.ok(reg.isRegistered(VOL));
    const read = reg.read(VOL);
    assert.strictEqual(read.canonical, true);
    assert.deepStrictEqual(read.info, { volumeType: 'directvol', device: img, fsType: 'ext4', metadata: {}, options: [] });
  });

  it('re-add: unchanged when identical, replaced when different (refused while a sandbox is recorded, unless forced; records kept), repaired for an empty Kata leftover', () => {
    reg.add(VOL, json(img));
    reg.recordSandbox(VOL, 'sb1', 'runc');
    assert.strictEqual(reg.addWithResult(VOL, json(img)).action, 'unchanged');
    const before = snapshot(root);
    const e = expectVolumeError(() => reg.addWithResult(VOL, json(img, ',"options":["ro"]')), /is recorded as used by sandbox sb1 \(runc, read-write\); katavol does not change it under a running sandbox/);
    assert.match(e.fix, /stop those sandboxes first; if a record is stale .*--force/);
    assert.deepStrictEqual(snapshot(root), before);
    assert.strictEqual(reg.addWithResult(VOL, json(img, ',"options":["ro"]'), { force: true }).action, 'replaced');
    assert.deepStrictEqual(reg.read(VOL).info.options, ['ro']);
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [{ id: 'sb1', backend: 'runc', readOnly: false }]);

    const other = '/kubelet/leftover';
    fs.mkdirSync(path.join(root, encodeVolumePath(other)));
    assert.ok(reg.isRegistered(other), 'an empty dir counts as registered, as in runtime-rs');
    expectVolumeError(() => reg.read(other), /has no mountInfo\.json/);
    assert.strictEqual(reg.addWithResult(other, json(img)).action, 'repaired');
    assert.strictEqual(reg.read(other).info.device, img);
  });

  it('remove: refused while a sandbox is recorded (Kata\'s empty record too), naming them; --force removes and returns them', () => {
    reg.add(VOL, json(img));
    reg.recordSandbox(VOL, 'sb1', 'runtime-rs', true);
    fs.writeFileSync(path.join(reg.entryDir(VOL), 'kata-sb'), '');
    const before = snapshot(root);
    expectVolumeError(() => reg.remove(VOL), /recorded as used by sandbox kata-sb \(recorded by Kata, read-write\), sb1 \(runtime-rs, read-only\); katavol does not remove it/);
    assert.deepStrictEqual(snapshot(root), before);
    assert.deepStrictEqual(reg.remove(VOL, { force: true }).map((u) => u.id), ['kata-sb', 'sb1']);
    assert.ok(!reg.isRegistered(VOL));
  });

  describe('rejections leave the root byte-identical', () => {
    const cases: Array<[string, (img: string) => [string, string], RegExp]> = [
      ['empty volume path', (i) => ['', json(i)], /volume path is empty/],
      ['encoded name over 255 bytes', (i) => ['/' + 'v'.repeat(189), json(i)], /over the 255-byte file name limit/],
      ['invalid JSON', () => [VOL, '{"volume-type":'], /not valid JSON/],
      ['duplicate key', (i) => [VOL, `{"volume-type":"directvol","device":"${i}","device":"${i}","fstype":"ext4"}`], /duplicate key/],
      ['non-string metadata', (i) => [VOL, json(i, ',"metadata":{"fsGroup":4}')], /must be strings/],
      ['unknown volume-type', (i) => [VOL, `{"volume-type":"block","device":"${i}","fstype":"ext4"}`], /not a Kata volume type/],
      ['empty device', () => [VOL, json('')], /"device" is empty/],
      ['empty fstype', (i) => [VOL, `{"volume-type":"directvol","device":"${i}","fstype":""}`], /"fstype" is empty/],
      ['relative device', () => [VOL, json('disk.img')], /relative path/],
      ['missing device', (i) => [VOL, json(i + '.missing')], /does not exist/],
      ['directory device', (i) => [VOL, json(path.dirname(i))], /is a directory/],
      ['character device', () => [VOL, json('/dev/null')], /is a character device/],
      ['spdk device not a socket', (i) => [VOL, `{"volume-type":"spdkvol","device":"${i}","fstype":"ext4"}`], /not a unix socket/],
      ['spdk socket missing', (i) => [VOL, `{"volume-type":"spdkvol","device":"spdk://${i}.sock","fstype":"ext4"}`], /does not exist/],
      ['vfio device not an address', () => [VOL, '{"volume-type":"vfiovol","device":"/dev/sdb","fstype":"ext4"}'], /not a PCI address/],
    ];
    for (const [label, make, problem] of cases) {
      it(label, () => {
        reg.add('/existing', json(img));
        const before = snapshot(scratch);
        const [vp, js] = make(img);
        expectVolumeError(() => reg.add(vp, js), problem);
        assert.deepStrictEqual(snapshot(scratch), before);
      });
    }

    it('with no root at all, a rejected add creates nothing', () => {
      expectVolumeError(() => reg.add(VOL, json('')), /empty/);
      assert.strictEqual(fs.existsSync(root), false);
    });
  });

  it('accepts block devices, real unix sockets (with or without spdk://) and the VFIO address forms', async () => {
    reg.add('/b', json('/dev/loop0'));
    const sock = path.join(scratch, 'vhost.0');
    const server = net.createServer();
    await new Promise<void>((res) => server.listen(sock, res));
    try {
      reg.add('/s1', `{"volume-type":"spdkvol","device":"${sock}","fstype":"ext4"}`);
      reg.add('/s2', `{"volume-type":"spoolvol","device":"spdk://${sock}","fstype":"ext4"}`);
    } finally {
      await new Promise((res) => server.close(res));
    }
    reg.add('/v1', '{"volume-type":"vfiovol","device":"3b:00.1","fstype":"ext4"}');
    reg.add('/v2', '{"volume-type":"vfiovol","device":"/dev/vfio/12","fstype":"ext4"}');
    const r = reg.addWithResult('/v3', '{"volume-type":"vfiovol","device":"0000:3B:0A.7","fstype":"ext4"}');
    assert.strictEqual(r.info.device, '0000:3b:0a.7', 'stored lower case for sysfs');
    assert.match(r.notes.join(), /lower case/);
    assert.deepStrictEqual(reg.list().map((e) => e.volumePath), ['/b', '/s1', '/s2', '/v1', '/v2', '/v3']);
  });

  it('refuses an encoded directory that is a symlink, for every operation', () => {
    const target = path.join(scratch, 'elsewhere');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, MOUNT_INFO_FILE), json(img));
    fs.mkdirSync(root, { recursive: true });
    fs.symlinkSync(target, path.join(root, NAME));
    const before = snapshot(scratch);
    assert.strictEqual(reg.isRegistered(VOL), false);
    expectVolumeError(() => reg.add(VOL, json(img)), /symbolic link/);
    expectVolumeError(() => reg.read(VOL), /symbolic link/);
    expectVolumeError(() => reg.remove(VOL), /symbolic link/);
    expectVolumeError(() => reg.recordSandbox(VOL, 'sb'), /symbolic link/);
    assert.deepStrictEqual(reg.sandboxesOf(VOL), []);
    assert.deepStrictEqual(snapshot(scratch), before);
    assert.match(reg.list()[0].error ?? '', /symbolic link/);
  });

  it('refuses an entry that is a plain file', () => {
    fs.mkdirSync(root, { recursive: true });
    fs.writeFileSync(path.join(root, NAME), 'x');
    expectVolumeError(() => reg.add(VOL, json(img)), /not a directory/);
    expectVolumeError(() => reg.remove(VOL), /not a directory/);
  });

  it('remove (--force with a sandbox record): deletes the whole entry; a missing volume or an empty path is an error naming it; the root survives', () => {
    reg.add(VOL, json(img));
    reg.add('/keep', json(img));
    reg.recordSandbox(VOL, 'sb1');
    reg.remove(VOL, { force: true });
    assert.strictEqual(fs.existsSync(path.join(root, NAME)), false);
    assert.deepStrictEqual(fs.readdirSync(root).filter((n) => n !== LOCK_DIR_NAME), [encodeVolumePath('/keep')]);
    const e = expectVolumeError(() => reg.remove(VOL), /is not registered/);
    assert.strictEqual(e.volumePath, VOL);
    assert.match(e.message, new RegExp(VOL));
    const before = snapshot(scratch);
    expectVolumeError(() => reg.remove(''), /volume path is empty/);
    assert.deepStrictEqual(snapshot(scratch), before);
  });

  it('points at a mis-encoded entry (padding dropped) that Kata cannot find', () => {
    fs.mkdirSync(path.join(root, NAME.replace(/=+$/, '')), { recursive: true });
    const e = expectVolumeError(() => reg.read(VOL), /wrong encoding/);
    assert.match(e.problem, new RegExp(NAME.replace(/=+$/, '')));
    assert.match(reg.list()[0].error ?? '', /not Kata's encoding of "\/kubelet\/kata-direct-vol-002\/directvol002"/);
  });

  it('read: flags non-canonical files; rewriteCanonical fixes them once', () => {
    reg.add(VOL, json(img));
    const file = reg.mountInfoFile(VOL);
    fs.writeFileSync(file, `{ "volume_type": "directvol", "fs_type": "ext4", "device": "${img}", "metadata": "{}" }\n`);
    assert.strictEqual(reg.read(VOL).canonical, false);
    assert.strictEqual(reg.rewriteCanonical(VOL), true);
    assert.strictEqual(fs.readFileSync(file, 'utf8'), json(img));
    assert.strictEqual(fs.statSync(file).mode & 0o777, 0o600);
    assert.strictEqual(reg.rewriteCanonical(VOL), false);
    assert.strictEqual(reg.read(VOL).canonical, true);
  });

  it('read: a broken stored file names the file and the fix', () => {
    reg.add(VOL, json(img));
    fs.writeFileSync(reg.mountInfoFile(VOL), '{"volume-type":"directvol"');
    const e = expectVolumeError(() => reg.read(VOL), /stored mount info is not valid JSON/);
    assert.strictEqual(e.file, reg.mountInfoFile(VOL));
    assert.match(e.fix, /katavol direct-volume add/);
  });

  it('list: every entry decoded, broken ones with an error, katavol temp names skipped', () => {
    reg.add('/b/vol', json(img));
    reg.add('/a/vol', json(img, ',"options":["ro"]'));
    reg.recordSandbox('/a/vol', 'pod1', 'runc');
    fs.mkdirSync(path.join(root, encodeVolumePath('/c/broken')));
    fs.mkdirSync(path.join(root, '.katavol-new-1-abc'));
    fs.writeFileSync(path.join(root, MOUNT_INFO_FILE), '{}');
    const l = reg.list();
    assert.deepStrictEqual(l.map((e) => [e.volumePath, e.info?.device, e.sandboxes, e.error !== undefined]), [
      ['', undefined, [], true],
      ['/a/vol', img, ['pod1'], false],
      ['/b/vol', img, [], false],
      ['/c/broken', undefined, [], true],
    ]);
    assert.match(l[0].error ?? '', /empty path/);
    assert.deepStrictEqual(new Registry(path.join(scratch, 'none')).list(), []);
  });

  it('records, lists and releases sandboxes like Kata Go (one file per sandbox id)', () => {
    reg.add(VOL, json(img));
    reg.recordSandbox(VOL, 'sb-b', 'runc');
    reg.recordSandbox(VOL, 'sb-a', 'runtime-rs');
    fs.writeFileSync(path.join(reg.entryDir(VOL), 'kata-go-sandbox'), ''); // what Kata's Go runtime writes
    // Kata's form in the volume's directory (empty, 0600, as Go's RecordSandboxID); ours elsewhere.
    assert.strictEqual(fs.readFileSync(path.join(reg.entryDir(VOL), 'sb-b'), 'utf8'), '');
    assert.strictEqual(fs.statSync(path.join(reg.entryDir(VOL), 'sb-b')).mode & 0o777, 0o600);
    assert.strictEqual(fs.readFileSync(reg.sandboxModeFile(VOL, 'sb-b'), 'utf8'), 'runc');
    assert.deepStrictEqual(fs.readdirSync(reg.entryDir(VOL)).sort(), ['kata-go-sandbox', MOUNT_INFO_FILE, 'sb-a', 'sb-b'], 'nothing but mountInfo.json and sandbox ids, so kata-ctl\'s lookup finds a sandbox');
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [
      { id: 'kata-go-sandbox', backend: '', readOnly: false },
      { id: 'sb-a', backend: 'runtime-rs', readOnly: false },
      { id: 'sb-b', backend: 'runc', readOnly: false },
    ]);
    reg.releaseSandbox(VOL, 'sb-b');
    reg.releaseSandbox(VOL, 'sb-b');
    reg.releaseSandbox('/not/registered', 'sb-b');
    assert.deepStrictEqual(reg.sandboxesOf(VOL).map((s) => s.id), ['kata-go-sandbox', 'sb-a']);
    for (const bad of ['', '../x', 'a/b', MOUNT_INFO_FILE, '.hidden']) {
      expectVolumeError(() => reg.recordSandbox(VOL, bad), /sandbox id .* is not valid/);
    }
    expectVolumeError(() => reg.recordSandbox('/not/registered', 'sb'), /is not registered/);
    assert.deepStrictEqual(reg.sandboxesOf('/not/registered'), []);
  });

  it('Kata writing its empty <sandbox-id> file over our record (Go RecordSandboxID, runtime-rs after kata PR #13443) loses nothing of ours', () => {
    reg.add(VOL, json(img));
    const dir = reg.entryDir(VOL);
    reg.recordSandbox(VOL, 'pod-ro', 'runtime-rs', true);
    reg.recordSandbox(VOL, 'pod-rw', 'runc', false);
    // What Kata does at Create: os.WriteFile(<dir>/<sandbox id>, "", 0600), truncating whatever was there.
    for (const sb of ['pod-ro', 'pod-rw']) fs.writeFileSync(path.join(dir, sb), '', { mode: 0o600 });
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [
      { id: 'pod-ro', backend: 'runtime-rs', readOnly: true },
      { id: 'pod-rw', backend: 'runc', readOnly: false },
    ]);
    // A record written by an older katavol (mode inline) still reads back, and is rewritten in Kata's form.
    fs.writeFileSync(path.join(dir, 'pod-old'), 'runtime-rs ro');
    assert.deepStrictEqual(reg.sandboxesOf(VOL).find((s) => s.id === 'pod-old'), { id: 'pod-old', backend: 'runtime-rs', readOnly: true });
    reg.recordSandbox(VOL, 'pod-old', 'runtime-rs', true);
    assert.strictEqual(fs.readFileSync(path.join(dir, 'pod-old'), 'utf8'), '');
    // Released: both parts go; removing the volume drops what is left of ours.
    reg.releaseSandbox(VOL, 'pod-ro');
    assert.strictEqual(fs.existsSync(reg.sandboxModeFile(VOL, 'pod-ro')), false);
    reg.remove(VOL, { force: true });
    assert.strictEqual(fs.existsSync(path.dirname(reg.sandboxModeFile(VOL, 'pod-rw'))), false);
  });

  it('records whether a sandbox uses the volume read-only; an empty Kata record reads back read-write', () => {
    reg.add(VOL, json(img));
    const dir = reg.entryDir(VOL);
    reg.recordSandbox(VOL, 'sb-ro', 'runtime-rs', true);
    reg.recordSandbox(VOL, 'sb-rw', 'runc', false);
    reg.recordSandbox(VOL, 'sb-bare', '', true);
    fs.writeFileSync(path.join(dir, 'kata-go-sandbox'), ''); // Kata's Go runtime: empty, mode unknown
    for (const sb of ['sb-ro', 'sb-rw', 'sb-bare']) assert.strictEqual(fs.readFileSync(path.join(dir, sb), 'utf8'), '', `${sb}: Kata's form`);
    assert.strictEqual(fs.readFileSync(reg.sandboxModeFile(VOL, 'sb-ro'), 'utf8'), 'runtime-rs ro');
    assert.strictEqual(fs.readFileSync(reg.sandboxModeFile(VOL, 'sb-rw'), 'utf8'), 'runc');
    assert.strictEqual(fs.readFileSync(reg.sandboxModeFile(VOL, 'sb-bare'), 'utf8'), 'ro');
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [
      { id: 'kata-go-sandbox', backend: '', readOnly: false },
      { id: 'sb-bare', backend: '', readOnly: true },
      { id: 'sb-ro', backend: 'runtime-rs', readOnly: true },
      { id: 'sb-rw', backend: 'runc', readOnly: false },
    ]);
    // A new record replaces the sandbox's mode both ways.
    reg.recordSandbox(VOL, 'sb-ro', 'runtime-rs', false);
    reg.recordSandbox(VOL, 'sb-rw', 'runc', true);
    assert.deepStrictEqual(reg.sandboxesOf(VOL).filter((s) => s.id.startsWith('sb-r')), [
      { id: 'sb-ro', backend: 'runtime-rs', readOnly: false },
      { id: 'sb-rw', backend: 'runc', readOnly: true },
    ]);
    // Hand-edited records: surrounding white space and newlines are ignored.
    fs.writeFileSync(path.join(dir, 'sb-ro'), '  runtime-rs \t ro\n\n');
    fs.writeFileSync(path.join(dir, 'sb-rw'), 'runc\n');
    fs.writeFileSync(path.join(dir, 'sb-bare'), '\n'); // blank, as Kata writes it: our mode beside it still counts
    assert.deepStrictEqual(reg.sandboxesOf(VOL).filter((s) => s.id.startsWith('sb-')), [
      { id: 'sb-bare', backend: '', readOnly: true },
      { id: 'sb-ro', backend: 'runtime-rs', readOnly: true },
      { id: 'sb-rw', backend: 'runc', readOnly: false },
    ]);
    // A backend name that would read back as something else is refused before anything is written.
    const before = snapshot(scratch);
    expectVolumeError(() => reg.recordSandbox(VOL, 'sb-new', 'ro'), /cannot be stored in a sandbox record/);
    expectVolumeError(() => reg.recordSandbox(VOL, 'sb-new', 'my backend', true), /cannot be stored in a sandbox record/);
    assert.deepStrictEqual(snapshot(scratch), before);
  });

  it('breaks a lock left by a dead process, and times out on a live holder naming the lock file', () => {
    reg.add(VOL, json(img));
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const target = { volumePath: VOL, lockDir: path.join(root, LOCK_DIR_NAME), entryName: NAME };
    const lockFile = lockFileFor(target);
    fs.writeFileSync(lockFile, `${dead} deadbeef\n`);
    reg.recordSandbox(VOL, 'after-stale-lock');
    assert.strictEqual(fs.existsSync(lockFile), false);

    fs.writeFileSync(lockFile, `${process.pid} someoneelse\n`);
    const e = expectVolumeError(() => withLock(target, () => 1, 50), /locked by process/);
    assert.strictEqual(e.file, lockFile);
    assert.strictEqual(fs.readFileSync(lockFile, 'utf8'), `${process.pid} someoneelse\n`, 'a live holder keeps its lock');
  });

  it('on a full filesystem: an add fails naming ENOSPC and leaves no trace, while sandbox records can still be released (the lock takes no data block)', () => {
    const small = path.join(scratch, 'small');
    fs.mkdirSync(small);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'katavol-test', small], { encoding: 'utf8' });
    assert.strictEqual(m.status, 0, m.stderr);
    try {
      const full = new Registry(path.join(small, 'vols'));
      full.add(VOL, json(img));
      full.recordSandbox(VOL, 'sb1', 'runc');
      // Fill every data page: a new file can still get an inode, but not a byte of content.
      const fd = fs.openSync(path.join(small, 'filler'), 'a');
      for (const size of [65536, 4096, 512, 64, 1]) {
        for (;;) { try { fs.writeSync(fd, Buffer.alloc(size, 1)); } catch { break; } }
      }
      fs.closeSync(fd);
      const before = snapshot(path.join(small, 'vols'));
      const e = expectVolumeError(() => full.add('/kubelet/other', json(img)), /cannot write the registry entry: ENOSPC/);
      assert.match(e.fix, /free some space/);
      assert.deepStrictEqual(snapshot(path.join(small, 'vols')), before, 'the failed add changed nothing');
      full.releaseSandbox(VOL, 'sb1');
      assert.deepStrictEqual(full.sandboxesOf(VOL), [], 'released on the full disk');
    } finally {
      spawnSync('umount', [small]);
    }
  });
});
