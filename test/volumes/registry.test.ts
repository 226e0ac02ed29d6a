import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import {
  KATA_VOLUME_ROOT, LOCK_DIR_NAME, MOUNT_INFO_FILE, MOUNT_INFO_MAX_BYTES, Registry, SANDBOX_MODES_DIR_NAME, formatSandboxRecord, parseSandboxRecord,
  resolveVolumeRoot, volumePathWarnings, volumeRootInEffect,
} from '../../src/volumes/registry';
import { encodeVolumePath } from '../../src/volumes/encoding';
import { errnoOf } from '../../src/volumes/files';
import { lockFileFor, withLock } from '../../src/volumes/lock';
import { VolumeError } from '../../src/volumes/types';
import { imageFile, mkExt4, withTmpfs } from '../support/disks';
import { snapshot } from '../support/scratch';
import { closeServer, listeningSocket, useScratchRegistry } from '../support/volumes';

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

// Each test's scratch registry (at Kata's relative layout under it) and a plain image file, set by
// withRegistry's hooks in both blocks below.
let scratch: string;
let root: string;
let reg: Registry;
let img: string;
const json = (device: string, extra = ''): string => `{"volume-type":"directvol","device":"${device}","fstype":"ext4"${extra}}`;

function withRegistry(): void {
  const fx = useScratchRegistry('reg', path.join('run', 'direct-volumes'));
  beforeEach(() => {
    ({ scratch, root, reg } = fx);
    img = imageFile(scratch);
  });
}

describe('volumes/registry', () => {
  withRegistry();

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
    const server = await listeningSocket(sock);
    try {
      reg.add('/s1', `{"volume-type":"spdkvol","device":"${sock}","fstype":"ext4"}`);
      reg.add('/s2', `{"volume-type":"spoolvol","device":"spdk://${sock}","fstype":"ext4"}`);
    } finally {
      await closeServer(server);
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
    withTmpfs(small, () => {
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
    }, 'size=256k');
  });
});

// What a user sees from each decision of the registry: exact problem and fix texts, the files named,
// the files written or left alone. Also every file-system failure path, reached for real (a read-only
// or full tmpfs, a file in the way, a symbolic-link loop, an unprivileged effective uid).
describe('volumes/registry: every refusal and failure, as the user reads it', () => {
  withRegistry();

  const remount = (dir: string, how: 'ro' | 'rw'): void => {
    const m = spawnSync('mount', ['-o', `remount,${how}`, dir], { encoding: 'utf8' });
    assert.strictEqual(m.status, 0, m.stderr);
  };
  /** Runs fn with the effective uid of nobody (as a user without rights on the registry would). */
  function asNobody<T>(fn: () => T): T {
    assert.ok(process.seteuid);
    process.seteuid(65534);
    try {
      return fn();
    } finally {
      process.seteuid(0);
    }
  }

  it('the root in effect and where it came from; a relative $KATAVOL_VOLUME_ROOT is refused, giving the absolute form', () => {
    assert.deepStrictEqual(volumeRootInEffect({}), { root: KATA_VOLUME_ROOT, origin: "Kata's default" });
    assert.deepStrictEqual(volumeRootInEffect({}, { root: '/etc/x', file: '/etc/katavol/config.json' }), { root: '/etc/x', origin: '"volumeRoot" in /etc/katavol/config.json' });
    assert.deepStrictEqual(volumeRootInEffect({ KATAVOL_VOLUME_ROOT: '/env/root' }, { root: '/etc/x', file: 'f' }), { root: '/env/root', origin: '$KATAVOL_VOLUME_ROOT' });
    assert.deepStrictEqual(volumeRootInEffect({ KATAVOL_VOLUME_ROOT: '' }, { root: '', file: 'f' }), { root: KATA_VOLUME_ROOT, origin: "Kata's default" });
    assert.strictEqual(resolveVolumeRoot('/etc/x', { KATAVOL_VOLUME_ROOT: '/env/root' }), '/env/root');
    assert.strictEqual(resolveVolumeRoot('/etc/x', {}), '/etc/x');
    assert.strictEqual(resolveVolumeRoot(undefined, {}), KATA_VOLUME_ROOT);
    const e = expectVolumeError(() => volumeRootInEffect({ KATAVOL_VOLUME_ROOT: 'vols' }, { root: '/etc/x', file: 'f' }), /is a relative path/);
    assert.strictEqual(e.message, `$KATAVOL_VOLUME_ROOT "vols" is a relative path, which the CLI and the shim would each resolve from their own working directory; set KATAVOL_VOLUME_ROOT to an absolute path, e.g. KATAVOL_VOLUME_ROOT=${path.resolve('vols')}`);
    assert.strictEqual(new Registry('relative/vols').root, path.resolve('relative/vols'));
    assert.strictEqual(KATA_VOLUME_ROOT, '/run/kata-containers/shared/direct-volumes', "Kata's own root (kata-ctl, runtime-rs)");
  });

  it('creates the registry root 0755 and its lock directory 0700 whatever the umask', () => {
    const saved = process.umask(0);
    try {
      reg.add(VOL, json(img));
    } finally {
      process.umask(saved);
    }
    assert.strictEqual(fs.statSync(root).mode & 0o777, 0o755);
    assert.strictEqual(fs.statSync(path.join(root, LOCK_DIR_NAME)).mode & 0o777, 0o700);
    assert.strictEqual(fs.statSync(reg.entryDir(VOL)).mode & 0o777, 0o700);
  });

  it('an entry that is a symbolic link or a plain file is not registered, and is refused naming what to delete; nothing is written through a link', () => {
    fs.mkdirSync(root, { recursive: true });
    const target = path.join(scratch, 'elsewhere');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'sb1'), '');
    fs.symlinkSync(target, path.join(root, NAME));
    assert.strictEqual(reg.isRegistered(VOL), false);
    let e = expectVolumeError(() => reg.read(VOL), /symbolic link/);
    assert.deepStrictEqual([e.problem, e.fix, e.file], ['the registry entry is a symbolic link; katavol refuses to follow it', `check where it points and delete it by hand (rm ${path.join(root, NAME)}), then add the volume again`, path.join(root, NAME)]);
    reg.releaseSandbox(VOL, 'sb1');
    reg.releaseSandboxIf(VOL, 'sb1', () => true);
    assert.deepStrictEqual(fs.readdirSync(target), ['sb1'], 'the link\'s target is left alone');
    fs.rmSync(path.join(root, NAME));
    fs.writeFileSync(path.join(root, NAME), '');
    assert.strictEqual(reg.isRegistered(VOL), false);
    e = expectVolumeError(() => reg.read(VOL), /not a directory/);
    assert.deepStrictEqual([e.problem, e.fix], ['the registry entry exists but is not a directory', `delete it by hand (rm ${path.join(root, NAME)}), then add the volume again`]);
    assert.deepStrictEqual(reg.sandboxesOf(VOL), []);
  });

  it('removes a volume that never had a sandbox record, leaving no record directories', () => {
    reg.add(VOL, json(img));
    assert.deepStrictEqual(reg.remove(VOL), []);
    assert.deepStrictEqual(fs.readdirSync(root), [LOCK_DIR_NAME]);
  });

  it('lists sandbox records in byte order, whatever order the directory gives', () => {
    reg.add(VOL, json(img));
    const ids = ['z9', 'Zed', 'm-1', 'a.b', 'A0', 'q_q', 'b', '9', 'k', 'x-y-z', 'C', 'e'];
    for (const id of ids) fs.writeFileSync(path.join(reg.entryDir(VOL), id), '');
    assert.deepStrictEqual(reg.sandboxesOf(VOL).map((s) => s.id), [...ids].sort());
  });

  it('releasing a sandbox of a volume that is not registered creates nothing, not even the root', () => {
    const none = new Registry(path.join(scratch, 'none'));
    none.releaseSandbox(VOL, 'sb1');
    assert.strictEqual(fs.existsSync(none.root), false);
  });

  it('warns about volume paths that are legal but probably not what was meant, and keys them byte for byte', () => {
    for (const fine of ['/kubelet/v1', '/', '/a/.b/..c/b./c..']) assert.deepStrictEqual(volumePathWarnings(fine), [], fine);
    assert.deepStrictEqual(volumePathWarnings('kubelet/v1'), ['volume path "kubelet/v1" is relative; the OCI mount source must match it byte for byte']);
    assert.deepStrictEqual(volumePathWarnings('/kubelet/v1//'), [
      'volume path "/kubelet/v1//" ends with "/"; "/kubelet/v1" is a different volume',
      'volume path "/kubelet/v1//" is not normalised ("//", "." or ".."); it is used byte for byte',
    ]);
    for (const odd of ['/a//b', '/a/./b', '/a/../b', '/a/.', '/a/..']) {
      assert.deepStrictEqual(volumePathWarnings(odd), [`volume path "${odd}" is not normalised ("//", "." or ".."); it is used byte for byte`], odd);
    }
    for (const odd of ['./a', '../a', '.', '..']) assert.strictEqual(volumePathWarnings(odd).length, 2, odd);
    const r = reg.addWithResult('/kubelet/v1/', json(img));
    assert.ok(r.notes.includes('volume path "/kubelet/v1/" ends with "/"; "/kubelet/v1" is a different volume'), r.notes.join('\n'));
    assert.strictEqual(r.file, path.join(root, encodeVolumePath('/kubelet/v1/'), MOUNT_INFO_FILE));
    assert.strictEqual(reg.isRegistered('/kubelet/v1'), false);
  });

  it('sandbox records read "<backend>" or "<backend> ro", tolerant of white space', () => {
    assert.deepStrictEqual([formatSandboxRecord('runc', false), formatSandboxRecord('runc', true), formatSandboxRecord('', true), formatSandboxRecord('', false)], ['runc', 'runc ro', 'ro', '']);
    const cases: Array<[string, string, boolean]> = [
      ['', '', false], [' \n', '', false], ['ro', '', true], ['\trunc  ro \n', 'runc', true], ['ro runc', 'ro runc', false], ['a \t b', 'a b', false], ['runc rw', 'runc rw', false],
    ];
    for (const [text, backend, readOnly] of cases) assert.deepStrictEqual(parseSandboxRecord(text), { backend, readOnly }, JSON.stringify(text));
  });

  it('entry names fit in 255 bytes: volume paths of at most 189 bytes; an empty or missing path is refused', () => {
    const longest = '/' + 'v'.repeat(188);
    assert.strictEqual(path.basename(reg.entryDir(longest)).length, 252);
    let e = expectVolumeError(() => reg.entryDir(longest + 'v'), /over the 255-byte/);
    assert.strictEqual(e.problem, 'the volume path is 190 bytes, so its encoded directory name would be 256 bytes, over the 255-byte file name limit (Kata fails with "File name too long", issue #10284)');
    assert.strictEqual(e.fix, 'use a volume path of at most 189 bytes');
    assert.strictEqual(e.volumePath, longest + 'v');
    e = expectVolumeError(() => reg.entryDir('/' + 'é'.repeat(95)), /over the 255-byte/);
    assert.match(e.problem, /^the volume path is 191 bytes, so its encoded directory name would be 256 bytes/);
    for (const bad of ['', undefined, 7]) {
      e = expectVolumeError(() => reg.entryDir(bad as unknown as string), /^the volume path is empty$/);
      assert.strictEqual(e.fix, 'give the path the volume is mounted from (the OCI mount source), e.g. /kubelet/vol1');
      assert.strictEqual(e.volumePath, '');
    }
    assert.strictEqual(reg.isRegistered(''), false);
    assert.strictEqual(reg.isRegistered(longest + 'v'), false);
    assert.strictEqual(reg.mountInfoFile(VOL), path.join(root, NAME, MOUNT_INFO_FILE));
  });

  it('an unregistered volume, and each mis-encoding of its name (padding dropped, "+" for "-", both), are named with the fix', () => {
    let e = expectVolumeError(() => reg.read('/nope'), /not registered/);
    assert.strictEqual(e.problem, 'is not registered (no registry entry)');
    assert.strictEqual(e.fix, `register it with: katavol direct-volume add /nope '{"volume-type":"directvol","device":"/dev/sdb","fstype":"ext4"}'`);
    assert.strictEqual(e.file, path.join(root, encodeVolumePath('/nope')));
    const vol = '/a>b>';
    const name = encodeVolumePath(vol);
    assert.strictEqual(name, 'L2E-Yj4=');
    for (const stray of ['L2E-Yj4', 'L2E+Yj4=', 'L2E+Yj4']) {
      const p = path.join(root, stray);
      fs.mkdirSync(p, { recursive: true });
      assert.strictEqual(reg.strayEntryFor(vol), p);
      e = expectVolumeError(() => reg.read(vol), /wrong encoding/);
      assert.strictEqual(e.problem, `is not registered under ${name}, but ${p} holds an entry for it with the wrong encoding (Kata cannot find it)`);
      assert.strictEqual(e.fix, `register it again with katavol direct-volume add, then delete ${p}`);
      assert.strictEqual(e.file, path.join(root, name));
      fs.rmSync(p, { recursive: true });
      fs.writeFileSync(p, ''); // a file of that name is no entry
      assert.strictEqual(reg.strayEntryFor(vol), undefined);
      fs.rmSync(p);
    }
    reg.add(vol, json(img));
    assert.strictEqual(reg.strayEntryFor(vol), undefined, 'the right name is no stray');
    // Two '=' of padding dropped.
    assert.strictEqual(encodeVolumePath('/abc'), 'L2FiYw==');
    fs.mkdirSync(path.join(root, 'L2FiYw'));
    assert.strictEqual(reg.strayEntryFor('/abc'), path.join(root, 'L2FiYw'));
  });

  it('read: an incomplete entry, or a mountInfo.json that is not a small regular file, is refused naming the file and the fix', () => {
    fs.mkdirSync(path.join(root, NAME), { recursive: true });
    const file = path.join(root, NAME, MOUNT_INFO_FILE);
    let e = expectVolumeError(() => reg.read(VOL), /has no mountInfo\.json/);
    assert.strictEqual(e.problem, 'the registry entry has no mountInfo.json (an incomplete entry, e.g. left by a failed kata-ctl add; Kata runtime-rs fails every container using it)');
    assert.strictEqual(e.fix, `add it again with katavol direct-volume add ${VOL} '<mount-info-json>', or delete it with katavol direct-volume remove ${VOL}`);
    assert.strictEqual(e.file, file);

    const odd: Array<[() => void, string]> = [
      [() => assert.strictEqual(spawnSync('mkfifo', [file]).status, 0), 'mountInfo.json is a FIFO, not a regular file'],
      [() => fs.symlinkSync(img, file), 'mountInfo.json is a symbolic link; katavol does not follow links here'],
      [() => fs.writeFileSync(file, ' '.repeat(MOUNT_INFO_MAX_BYTES + 1)), `mountInfo.json is ${MOUNT_INFO_MAX_BYTES + 1} bytes, more than the ${MOUNT_INFO_MAX_BYTES} katavol reads from it`],
    ];
    for (const [make, problem] of odd) {
      make();
      e = expectVolumeError(() => reg.read(VOL), /mountInfo\.json is/);
      assert.deepStrictEqual([e.problem, e.fix, e.file], [problem, `remove it (katavol direct-volume remove --force ${VOL}) and add the volume again`, file]);
      // add replaces it like any other content, even though it could not be read.
      assert.strictEqual(reg.addWithResult(VOL, json(img)).action, 'replaced');
      assert.strictEqual(fs.readFileSync(file, 'utf8'), json(img));
      fs.rmSync(file);
    }
    assert.strictEqual(MOUNT_INFO_MAX_BYTES, 1 << 20);
    fs.writeFileSync(file, `${json(img)}${' '.repeat(MOUNT_INFO_MAX_BYTES - json(img).length)}`);
    const r = reg.read(VOL);
    assert.deepStrictEqual([r.info.device, r.canonical, r.raw.length, r.dir], [img, false, MOUNT_INFO_MAX_BYTES, path.join(root, NAME)]);
  });

  it('read: a stored file that does not parse says it is the stored one, and how to write it again', () => {
    reg.add(VOL, json(img));
    fs.writeFileSync(reg.mountInfoFile(VOL), '[1]');
    const e = expectVolumeError(() => reg.read(VOL), /stored/);
    assert.strictEqual(e.problem, 'stored mount info must be a JSON object, found an array');
    assert.strictEqual(e.fix, `give one JSON object such as '{"volume-type":"directvol","device":"/dev/sdb","fstype":"ext4"}' (single-quote it in the shell); then write it again with katavol direct-volume add`);
    assert.strictEqual(e.file, reg.mountInfoFile(VOL));
    assert.ok(e.cause instanceof VolumeError && e.cause.file === reg.mountInfoFile(VOL) && e.cause.volumePath === VOL, 'the parse error kept as the cause, naming the file');
    fs.writeFileSync(reg.mountInfoFile(VOL), json(img));
    assert.deepStrictEqual([reg.read(VOL).canonical, reg.read(VOL).raw], [true, json(img)]);
  });

  it('add: refuses an unknown or mismatched fstype, notes a blank device and an upper-case PCI address, and leaves an identical entry alone', () => {
    const e = expectVolumeError(() => reg.add(VOL, `{"volume-type":"directvol","device":"${img}","fstype":"ext44"}`), /^fstype "ext44" is not a filesystem Linux knows/);
    assert.strictEqual(e.fix, 'did you mean "fstype":"ext4"?');
    const ext4 = mkExt4(scratch, 'ext4.img', 8 << 20);
    const m = expectVolumeError(() => reg.add(VOL, `{"volume-type":"directvol","device":"${ext4}","fstype":"xfs"}`), /declares fstype "xfs"/);
    assert.strictEqual(m.problem, `declares fstype "xfs" but device ${ext4} holds ext4`);
    assert.strictEqual(m.fix, `register it with "fstype":"ext4" (katavol direct-volume add), or point "device" at the xfs image`);
    assert.strictEqual(fs.existsSync(root), false, 'nothing created for a refused add');

    let r = reg.addWithResult(VOL, json(img));
    assert.deepStrictEqual(r.notes, [`declares fstype "ext4" but device ${img} holds no filesystem katavol recognises (ext2/3/4, xfs, btrfs, ...); containers using it will be refused until it holds ext4`]);
    assert.deepStrictEqual(reg.addWithResult(VOL, json(ext4)).notes, []);
    // Other volume types' devices are not read for a superblock.
    r = reg.addWithResult('/v', '{"volume-type":"vfiovol","device":"0000:3B:0A.7","fstype":"ext4"}');
    assert.deepStrictEqual(r.notes, ['stored PCI address "0000:3B:0A.7" as "0000:3b:0a.7" (sysfs names are lower case)']);
    assert.deepStrictEqual(reg.addWithResult('/v', '{"volume-type":"vfiovol","device":"0000:3b:0a.7","fstype":"ext4"}').notes, []);

    const empty = expectVolumeError(() => reg.add(VOL, `{"volume-type":"directvol","device":"${img}","fstype":""}`), /"fstype" is empty/);
    assert.deepStrictEqual([empty.problem, empty.fix], ['"fstype" is empty (the guest could not mount the volume)', 'set "fstype" to the filesystem on the device, e.g. "fstype":"ext4"']);
    // A relative "PCI address" that happens to name a file here is still no image to look into.
    const cwd = process.cwd();
    fs.writeFileSync(path.join(scratch, '0000:3b:0a.6'), Buffer.alloc(4096));
    process.chdir(scratch);
    try {
      assert.deepStrictEqual(reg.addWithResult('/v6', '{"volume-type":"vfiovol","device":"0000:3b:0a.6","fstype":"ext4"}').notes, []);
    } finally {
      process.chdir(cwd);
    }

    const file = reg.mountInfoFile(VOL);
    const before = fs.statSync(file);
    assert.strictEqual(reg.addWithResult(VOL, json(ext4)).action, 'unchanged');
    assert.strictEqual(fs.statSync(file).ino, before.ino, 'an unchanged entry is not rewritten');
  });

  it('add: a registry root that is not a directory is refused, naming it', () => {
    fs.mkdirSync(path.dirname(root), { recursive: true });
    fs.writeFileSync(root, '');
    const e = expectVolumeError(() => reg.add(VOL, json(img)), /registry root/);
    assert.deepStrictEqual([e.problem, e.fix, e.file], ['the registry root is not a directory', 'remove it or set KATAVOL_VOLUME_ROOT to a directory', root]);
    assert.strictEqual(fs.readFileSync(root, 'utf8'), '');
    const l = expectVolumeError(() => reg.list(), /cannot list the registry root: ENOTDIR/);
    assert.strictEqual(l.volumePath, '');
    assert.match(l.message, /^cannot list the registry root: ENOTDIR/);
    assert.strictEqual(l.fix, 'the registry root or a directory above it is a file: point KATAVOL_VOLUME_ROOT (or "volumeRoot" in the shim config) at a directory');
  });

  it('a file above the registry root: every operation fails naming ENOTDIR and what to point where', () => {
    fs.writeFileSync(path.join(scratch, 'file'), '');
    const r = new Registry(path.join(scratch, 'file', 'vols'));
    const fix = 'the registry root or a directory above it is a file: point KATAVOL_VOLUME_ROOT (or "volumeRoot" in the shim config) at a directory';
    let e = expectVolumeError(() => r.add(VOL, json(img)), /^cannot read the registry root: ENOTDIR/);
    assert.deepStrictEqual([e.fix, e.file], [fix, r.root]);
    e = expectVolumeError(() => r.releaseSandboxIf(VOL, 'sb', () => true), /^cannot create the registry root: ENOTDIR/);
    assert.deepStrictEqual([e.fix, e.file], [fix, r.root]);
    assert.strictEqual(r.isRegistered(VOL), false);
    assert.deepStrictEqual(r.sandboxesOf(VOL), []);
    expectVolumeError(() => r.read(VOL), /^is not registered/);
  });

  it('a symbolic-link loop above the registry root: refused with the generic fix', () => {
    fs.symlinkSync('loop', path.join(scratch, 'loop'));
    const r = new Registry(path.join(scratch, 'loop', 'vols'));
    let e = expectVolumeError(() => r.read(VOL), /^cannot read the registry entry: ELOOP/);
    assert.deepStrictEqual([e.fix, e.file], ['check the registry root and try again', r.entryDir(VOL)]);
    e = expectVolumeError(() => r.add(VOL, json(img)), /^cannot read the registry root: ELOOP/);
    assert.deepStrictEqual([e.fix, e.file], ['check the registry root and try again', r.root]);
  });

  it('a read-only registry: reads work, every write fails at the lock naming EROFS and the remount', () => {
    const small = path.join(scratch, 'ro');
    withTmpfs(small, () => {
      const r = new Registry(path.join(small, 'vols'));
      r.add(VOL, json(img));
      r.recordSandbox(VOL, 'sb1', 'runc');
      remount(small, 'ro');
      const before = snapshot(small);
      assert.strictEqual(r.read(VOL).info.device, img);
      for (const write of [() => r.recordSandbox(VOL, 'sb2'), () => r.remove(VOL, { force: true }), () => r.add(VOL, json(img, ',"options":["ro"]'), ), () => r.releaseSandbox(VOL, 'sb1')]) {
        const e = expectVolumeError(write, /^cannot lock the registry entry: EROFS/);
        assert.deepStrictEqual([e.fix, e.file], ['the registry root is on a read-only file system; remount it read-write', path.join(r.root, LOCK_DIR_NAME)]);
      }
      assert.deepStrictEqual(snapshot(small), before);
    });
  });

  it('without the rights on the registry: every operation names EACCES and says to run as root or use a root of one\'s own', () => {
    fs.chmodSync(scratch, 0o755);
    reg.add(VOL, json(img));
    reg.recordSandbox(VOL, 'sb1', 'runc');
    const fix = 'run as root (sudo), or point KATAVOL_VOLUME_ROOT at a directory you own';
    const before = snapshot(scratch);
    asNobody(() => {
      let e = expectVolumeError(() => reg.read(VOL), /^cannot read mountInfo\.json: EACCES/);
      assert.deepStrictEqual([e.fix, e.file], [fix, reg.mountInfoFile(VOL)]);
      e = expectVolumeError(() => reg.sandboxesOf(VOL), /^cannot list the registry entry: EACCES/);
      assert.deepStrictEqual([e.fix, e.file], [fix, reg.entryDir(VOL)]);
      e = expectVolumeError(() => reg.add('/kubelet/other', json(img)), /^cannot lock the registry entry: EACCES/);
      assert.deepStrictEqual([e.fix, e.file], [fix, path.join(root, LOCK_DIR_NAME)]);
    });
    assert.deepStrictEqual(snapshot(scratch), before);
    const fresh = new Registry(path.join(scratch, 'fresh', 'vols'));
    fs.mkdirSync(path.dirname(fresh.root));
    asNobody(() => {
      const e = expectVolumeError(() => fresh.add(VOL, json(img)), /^cannot create the registry root: EACCES/);
      assert.deepStrictEqual([e.fix, e.file], [fix, fresh.root]);
    });
    // A sticky root (as /tmp): a user may create entries there, but not remove another user's.
    fs.chmodSync(root, 0o1777);
    fs.chmodSync(path.join(root, LOCK_DIR_NAME), 0o1777);
    fs.chmodSync(reg.entryDir(VOL), 0o755);
    fs.rmSync(path.join(reg.entryDir(VOL), 'sb1'));
    const before2 = snapshot(scratch);
    asNobody(() => {
      let e = expectVolumeError(() => reg.remove(VOL), /^cannot remove the registry entry: EPERM/);
      assert.deepStrictEqual([e.fix, e.file], [fix, reg.entryDir(VOL)]);
      // The entry can be listed but its mountInfo.json not read: changing it fails at the read, naming it.
      e = expectVolumeError(() => reg.add(VOL, json(img, ',"options":["ro"]')), /^cannot write the registry entry: EACCES: permission denied, open /);
      assert.deepStrictEqual([e.fix, e.file], [fix, reg.mountInfoFile(VOL)]);
    });
    assert.deepStrictEqual(snapshot(scratch), before2);
    // Readable but not writable: the new content is built in the root and fails only at the rename into the entry.
    fs.writeFileSync(reg.mountInfoFile(VOL), ` ${json(img)}`, { mode: 0o644 });
    fs.chmodSync(reg.mountInfoFile(VOL), 0o644);
    asNobody(() => {
      let e = expectVolumeError(() => reg.add(VOL, json(img, ',"options":["ro"]')), /^cannot write the registry entry: EACCES: permission denied, rename /);
      assert.deepStrictEqual([e.fix, e.file], [fix, reg.mountInfoFile(VOL)]);
      e = expectVolumeError(() => reg.rewriteCanonical(VOL), /^cannot rewrite mountInfo\.json: EACCES: permission denied, rename /);
      assert.deepStrictEqual([e.fix, e.file], [fix, reg.mountInfoFile(VOL)]);
    });
    assert.deepStrictEqual(fs.readdirSync(root).filter((n) => n.startsWith('.katavol-tmp')), [], 'no temporary file left');
    // A sandbox record it cannot read is an error, not a guess at its mode.
    fs.writeFileSync(path.join(reg.entryDir(VOL), 'sb2'), 'runc ro', { mode: 0o600 });
    asNobody(() => assert.throws(() => reg.sandboxesOf(VOL), (e) => errnoOf(e) === 'EACCES'));
  });

  it('a full registry file system: add, a canonical rewrite and a new sandbox record fail naming ENOSPC, changing nothing', () => {
    const small = path.join(scratch, 'small');
    withTmpfs(small, () => {
      const full = new Registry(path.join(small, 'vols'));
      full.add(VOL, json(img));
      fs.writeFileSync(full.mountInfoFile(VOL), `{ "volume-type": "directvol", "device": "${img}", "fstype": "ext4" }`);
      const fd = fs.openSync(path.join(small, 'filler'), 'a');
      for (const size of [65536, 4096, 512, 64, 1]) {
        for (;;) { try { fs.writeSync(fd, Buffer.alloc(size, 1)); } catch { break; } }
      }
      fs.closeSync(fd);
      const before = snapshot(path.join(small, 'vols'));
      let e = expectVolumeError(() => full.rewriteCanonical(VOL), /^cannot rewrite mountInfo\.json: ENOSPC/);
      assert.deepStrictEqual([e.fix, e.file], ['free some space on the file system of the registry root', full.mountInfoFile(VOL)]);
      e = expectVolumeError(() => full.recordSandbox(VOL, 'sb2', 'runc'), /^cannot record sandbox sb2: ENOSPC/);
      assert.deepStrictEqual([e.fix, e.file], ['free some space on the file system of the registry root', path.join(full.entryDir(VOL), 'sb2')]);
      assert.deepStrictEqual(snapshot(path.join(small, 'vols')), before);
    }, 'size=256k');
  });

  it('remove: renames the entry away first (a mount point cannot be, and is left whole), then drops katavol\'s records of it', () => {
    reg.add(VOL, json(img));
    reg.add('/keep', json(img));
    reg.recordSandbox(VOL, 'sb1', 'runc', true);
    reg.recordSandbox('/keep', 'sb2', 'runc');
    const modes = path.join(root, SANDBOX_MODES_DIR_NAME);
    assert.strictEqual(fs.statSync(modes).mode & 0o777, 0o700);
    assert.strictEqual(fs.statSync(path.dirname(reg.sandboxModeFile(VOL, 'sb1'))).mode & 0o777, 0o700);
    assert.deepStrictEqual(reg.remove(VOL, { force: true }), [{ id: 'sb1', backend: 'runc', readOnly: true }]);
    assert.deepStrictEqual(fs.readdirSync(modes), [encodeVolumePath('/keep')], 'the other volume\'s records stay');
    assert.deepStrictEqual(reg.remove('/keep', { force: true }).map((u) => u.id), ['sb2']);
    assert.deepStrictEqual(fs.readdirSync(root), [LOCK_DIR_NAME], 'no trash, no records left');

    reg.add(VOL, json(img));
    const dir = reg.entryDir(VOL);
    withTmpfs(dir, () => {
      fs.writeFileSync(path.join(dir, MOUNT_INFO_FILE), json(img));
      const before = snapshot(root);
      const e = expectVolumeError(() => reg.remove(VOL), /^cannot remove the registry entry: EBUSY/);
      assert.deepStrictEqual([e.fix, e.file], ['check the registry root and try again', dir]);
      assert.deepStrictEqual(snapshot(root), before);
    });
  });

  it('list: sorted by volume path, then name; undecodable names explained, with the kata-runtime hint for mountInfo.json', () => {
    reg.add('/b', json(img));
    reg.add('/a', json(img));
    fs.mkdirSync(path.join(root, 'L2E'));   // '/a' with its padding dropped
    fs.mkdirSync(path.join(root, 'not base64!'));
    fs.mkdirSync(path.join(root, MOUNT_INFO_FILE));
    fs.mkdirSync(path.join(root, `${SANDBOX_MODES_DIR_NAME}`), { recursive: true });
    const l = reg.list();
    assert.deepStrictEqual(l.map((e) => [e.volumePath, e.name]), [['', MOUNT_INFO_FILE], ['', 'not base64!'], ['/a', 'L2E'], ['/a', 'L2E='], ['/b', 'L2I=']]);
    assert.deepStrictEqual(l.map((e) => e.error), [
      `not a registry entry (the name is not a base64url-encoded volume path); probably written by kata-runtime direct-volume add with an empty path; delete ${path.join(root, MOUNT_INFO_FILE)} if it is stale`,
      `not a registry entry (the name is not a base64url-encoded volume path); delete ${path.join(root, 'not base64!')} if it is stale`,
      `directory name is not Kata's encoding of "/a" (Kata looks for L2E=); add the volume again with katavol and delete ${path.join(root, 'L2E')}`,
      undefined,
      undefined,
    ]);
    assert.deepStrictEqual(l.map((e) => e.dir), l.map((e) => path.join(root, e.name)));
    // Byte order, not locale order.
    reg.add('/Z', json(img));
    reg.add('/é', json(img));
    assert.deepStrictEqual(reg.list().filter((e) => !e.error).map((e) => e.volumePath), ['/Z', '/a', '/b', '/é']);
  });

  it('sandbox ids: containerd-style names of at most 255 bytes, and the backend name must read back the same', () => {
    reg.add(VOL, json(img));
    reg.recordSandbox(VOL, 'a'.repeat(255), 'runc');
    reg.recordSandbox(VOL, 'A0._-z', 'runc');
    assert.deepStrictEqual(reg.sandboxesOf(VOL).map((s) => s.id), ['A0._-z', 'a'.repeat(255)]);
    const before = snapshot(scratch);
    for (const bad of ['a'.repeat(256), '-a', '_a', 'a b', 'a\n', 7]) {
      const e = expectVolumeError(() => reg.recordSandbox(VOL, bad as string), /is not valid/);
      assert.strictEqual(e.problem, `sandbox id ${JSON.stringify(bad)} is not valid`);
      assert.strictEqual(e.fix, 'use a containerd-style id: letters, digits, ".", "_" and "-", starting with a letter or digit');
    }
    const e = expectVolumeError(() => reg.recordSandbox(VOL, 'sb', 'a\tb'), /cannot be stored/);
    assert.strictEqual(e.problem, 'backend name "a\\tb" cannot be stored in a sandbox record (it would read back differently)');
    assert.strictEqual(e.fix, 'use a backend name without white space, other than "ro"');
    assert.strictEqual(e.file, path.join(reg.entryDir(VOL), 'sb'));
    assert.deepStrictEqual(snapshot(scratch), before);
  });

  it('recordSandboxIf: the check sees the other sandboxes\' records (not this one\'s) and a refusal records nothing', () => {
    reg.add(VOL, json(img));
    reg.recordSandbox(VOL, 'other', 'runc', true);
    reg.recordSandbox(VOL, 'me', 'runc');
    const seen: string[][] = [];
    reg.recordSandboxIf(VOL, 'me', 'runtime-rs', true, (others) => void seen.push(others.map((o) => `${o.id} ${o.backend} ${o.readOnly}`)));
    assert.deepStrictEqual(seen, [['other runc true']]);
    assert.deepStrictEqual(reg.sandboxesOf(VOL).find((s) => s.id === 'me'), { id: 'me', backend: 'runtime-rs', readOnly: true });
    const before = snapshot(scratch);
    const conflict = new Error('conflict');
    assert.throws(() => reg.recordSandboxIf(VOL, 'new', 'runc', false, () => { throw conflict; }), (e) => e === conflict, 'the check\'s own error, as it was thrown');
    assert.deepStrictEqual(snapshot(scratch), before);
  });

  it('repairs an entry without mountInfo.json even while Kata records a sandbox on it (nothing there to change under it)', () => {
    fs.mkdirSync(path.join(root, NAME), { recursive: true });
    fs.writeFileSync(path.join(root, NAME, 'kata-sb'), '');
    assert.strictEqual(reg.addWithResult(VOL, json(img)).action, 'repaired');
    assert.deepStrictEqual(reg.sandboxesOf(VOL).map((s) => s.id), ['kata-sb']);
  });

  it('releaseSandboxIf: decides under the lock, also for a volume no longer registered; keeps the record unless told', () => {
    reg.add(VOL, json(img));
    reg.recordSandbox(VOL, 'sb1', 'runc', true);
    const before = snapshot(scratch);
    let asked = 0;
    reg.releaseSandboxIf(VOL, 'sb1', () => {
      asked++;
      assert.strictEqual(fs.readdirSync(path.join(root, LOCK_DIR_NAME)).length, 1, 'asked under the lock');
      return false;
    });
    assert.strictEqual(asked, 1);
    assert.deepStrictEqual(snapshot(scratch), before, 'kept when the answer is no');
    reg.releaseSandboxIf('/gone', 'sb1', () => (asked++, true));
    assert.strictEqual(asked, 2, 'asked for an unregistered volume too');
    // settled runs next under the same lock, whether the record went or stayed.
    const settledSaw: string[][] = [];
    const settled = (): void => void settledSaw.push([...reg.sandboxesOf(VOL).map((s) => s.id), `locks:${fs.readdirSync(path.join(root, LOCK_DIR_NAME)).length}`]);
    reg.releaseSandboxIf(VOL, 'sb1', () => false, settled);
    reg.releaseSandboxIf('/gone', 'sb1', () => true, settled);
    assert.deepStrictEqual(settledSaw, [['sb1', 'locks:1'], ['sb1', 'locks:1']]);
    reg.releaseSandboxIf(VOL, 'sb1', () => true, settled);
    assert.deepStrictEqual(settledSaw[2], ['locks:1'], 'after the record went');
    assert.deepStrictEqual(reg.sandboxesOf(VOL), []);
    fs.writeFileSync(path.join(reg.entryDir(VOL), 'kata-sb'), ''); // written by Kata: no mode of ours beside it
    reg.releaseSandbox(VOL, 'kata-sb');
    assert.deepStrictEqual(fs.readdirSync(reg.entryDir(VOL)), [MOUNT_INFO_FILE]);
    assert.strictEqual(fs.existsSync(path.join(root, SANDBOX_MODES_DIR_NAME)), false, 'the last record takes katavol\'s record directories with it');
    expectVolumeError(() => reg.releaseSandboxIf(VOL, '../x', () => true), /sandbox id "..\/x" is not valid/);

    // Something that is not a record file in its place cannot be released: said, naming it.
    fs.mkdirSync(path.join(reg.entryDir(VOL), 'sb2'));
    fs.writeFileSync(path.join(reg.entryDir(VOL), 'sb2', 'x'), '');
    const e = expectVolumeError(() => reg.releaseSandbox(VOL, 'sb2'), /^cannot release sandbox sb2: /);
    assert.deepStrictEqual([e.fix, e.file], ['check the registry root and try again', path.join(reg.entryDir(VOL), 'sb2')]);
  });

  it('sandboxesOf: only regular files named like sandbox ids are records; an odd or oversized one counts, its mode from katavol\'s side', () => {
    reg.add(VOL, json(img));
    const dir = reg.entryDir(VOL);
    reg.recordSandbox(VOL, 'sb-ro', 'runtime-rs', true);
    fs.mkdirSync(path.join(dir, 'a-directory'));
    fs.writeFileSync(path.join(dir, '.hidden'), 'runc');
    fs.writeFileSync(path.join(dir, '-dash'), 'runc');
    fs.symlinkSync('sb-ro', path.join(dir, 'a-link'));
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [{ id: 'sb-ro', backend: 'runtime-rs', readOnly: true }]);
    // A FIFO is no record; Kata's record grown over 4 KiB is one, whose mode katavol kept.
    assert.strictEqual(spawnSync('mkfifo', [path.join(dir, 'fifo')]).status, 0);
    reg.recordSandbox(VOL, 'sb-big', 'runc', true);
    fs.writeFileSync(path.join(dir, 'sb-big'), 'x'.repeat(4097));
    fs.writeFileSync(path.join(dir, 'sb-4k'), `runc ro${' '.repeat(4089)}`);
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [
      { id: 'sb-4k', backend: 'runc', readOnly: true },
      { id: 'sb-big', backend: 'runc', readOnly: true },
      { id: 'sb-ro', backend: 'runtime-rs', readOnly: true },
    ]);
  });
});
