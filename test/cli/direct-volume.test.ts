import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { encodeVolumePath } from '../../src/volumes/encoding';
import { scratchDir, snapshot } from '../support/scratch';
import { mkExt4 } from '../support/disks';

const REPO = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(REPO, 'bin', 'katavol');

describe('katavol CLI (bin/katavol direct-volume)', () => {
  let scratch: string;
  let root: string;
  let img: string;
  const katavol = (...args: string[]): { code: number; out: string; err: string } => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, KATAVOL_VOLUME_ROOT: root } });
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  };
  const mi = (device: string): string => `{"volume-type":"directvol","device":"${device}","fstype":"ext4"}`;

  beforeEach(() => {
    scratch = scratchDir('cli');
    root = path.join(scratch, 'root');
    img = mkExt4(scratch, 'disk.img', 16 << 20);
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('prints usage with status 2 when called without a command, 0 for --help', () => {
    const r = katavol();
    assert.strictEqual(r.code, 2);
    assert.match(r.out, /usage: katavol <command>[\s\S]*direct-volume/);
    const h = katavol('direct-volume', '--help');
    assert.strictEqual(h.code, 0);
    assert.match(h.out, /add <volume-path> '<mount-info-json>'.*--volume-path P --mount-info J/);
  });

  it('add: kata-ctl positional syntax, one line of output, Kata\'s bytes on disk', () => {
    const r = katavol('direct-volume', 'add', '/kubelet/v1', `{"volume_type":"directvol","device":"${img}","fs_type":"ext4","metadata":"{}"}`);
    assert.strictEqual(r.code, 0, r.err);
    const file = path.join(root, encodeVolumePath('/kubelet/v1'), 'mountInfo.json');
    assert.strictEqual(r.out, `added direct volume /kubelet/v1 (directvol ${img}, ext4) in ${file}\n`);
    assert.match(r.err, /^katavol: note: read legacy key "volume_type"/m);
    assert.strictEqual(fs.readFileSync(file, 'utf8'), mi(img));
    assert.strictEqual(katavol('direct-volume', 'add', '/kubelet/v1', mi(img)).out, `unchanged: direct volume /kubelet/v1 (directvol ${img}, ext4) in ${file}\n`);
  });

  it('add: the Go runtime\'s flag syntax in its spellings', () => {
    for (const args of [
      ['--volume-path', '/f1', '--mount-info', mi(img)],
      ['--volume-path=/f2', `--mount-info=${mi(img)}`],
      ['-volume-path', '/f3', '-mount-info', mi(img)],
      ['--mount-info', mi(img), '/f4'],
    ]) {
      const r = katavol('direct-volume', 'add', ...args);
      assert.strictEqual(r.code, 0, `${args.join(' ')}: ${r.err}`);
    }
    assert.deepStrictEqual(fs.readdirSync(root).filter((n) => !n.startsWith('.')).sort(), ['/f1', '/f2', '/f3', '/f4'].map(encodeVolumePath).sort());
  });

  it('a relative KATAVOL_VOLUME_ROOT is refused (the shim, running in each bundle, would resolve it elsewhere), creating nothing', () => {
    const before = snapshot(scratch);
    const r = spawnSync(process.execPath, [BIN, 'direct-volume', 'add', '/kubelet/v1', mi(img)], { encoding: 'utf8', cwd: scratch, env: { ...process.env, KATAVOL_VOLUME_ROOT: 'vols' } });
    assert.strictEqual(r.status, 1);
    assert.strictEqual(r.stderr, `katavol: $KATAVOL_VOLUME_ROOT "vols" is a relative path, which the CLI and the shim would each resolve from their own working directory; set KATAVOL_VOLUME_ROOT to an absolute path, e.g. KATAVOL_VOLUME_ROOT=${path.join(scratch, 'vols')}\n`);
    assert.deepStrictEqual(snapshot(scratch), before);
  });

  it('usage errors exit 2 and touch nothing', () => {
    katavol('direct-volume', 'add', '/keep', mi(img));
    const before = snapshot(scratch);
    for (const [args, msg] of [
      [['direct-volume', 'add', '/v'], /missing the mount info JSON/],
      [['direct-volume', 'add', '--volume-path', '/v', '/v2', mi(img)], /unexpected argument/],
      [['direct-volume', 'add', '--bogus', '/v', mi(img)], /unknown option --bogus/],
      [['direct-volume', 'add', '--volume-path', '/a', '--volume-path', '/b', mi(img)], /--volume-path given twice/],
      [['direct-volume', 'resize', '/keep', 'ten'], /size "ten" is not a byte count/],
      [['direct-volume', 'frob'], /unknown direct-volume command "frob"/],
      [['frob'], /unknown command "frob"/],
    ] as Array<[string[], RegExp]>) {
      const r = katavol(...args);
      assert.strictEqual(r.code, 2, args.join(' '));
      assert.match(r.err, msg);
      assert.strictEqual(r.out, '');
    }
    assert.deepStrictEqual(snapshot(scratch), before);
  });

  it('volume errors exit 1 with a message naming the volume, file and fix, and touch nothing', () => {
    katavol('direct-volume', 'add', '/keep', mi(img));
    const before = snapshot(scratch);
    const bad = katavol('direct-volume', 'add', '/v', '{"volume-type":"block","device":"/x","fstype":"ext4"}');
    assert.strictEqual(bad.code, 1);
    assert.match(bad.err, /^katavol: volume "\/v": volume-type "block" is not a Kata volume type.*did you mean "volume-type":"directvol"\?\n$/);
    const gone = katavol('direct-volume', 'remove', '/nope');
    assert.strictEqual(gone.code, 1);
    assert.match(gone.err, new RegExp(`volume "/nope": is not registered.*\\(${root}/${encodeVolumePath('/nope')}\\); register it with: katavol direct-volume add /nope`));
    const empty = katavol('direct-volume', 'remove', '');
    assert.strictEqual(empty.code, 1);
    assert.match(empty.err, /the volume path is empty/);
    assert.deepStrictEqual(snapshot(scratch), before);
  });

  it('remove: one line, also with --volume-path, and "--" for a path starting with "-"', () => {
    katavol('direct-volume', 'add', '/v', mi(img));
    katavol('direct-volume', 'add', '--', '-odd', mi(img));
    fs.writeFileSync(path.join(root, encodeVolumePath('/v'), 'pod-a'), 'runtime-rs ro');
    const refused = katavol('direct-volume', 'remove', '/v');
    assert.deepStrictEqual([refused.code, refused.out], [1, '']);
    assert.match(refused.err, /volume "\/v": is recorded as used by sandbox pod-a \(runtime-rs, read-only\); katavol does not remove it under a running sandbox .*pass --force/);
    const again = katavol('direct-volume', 'add', '/v', `{"volume-type":"directvol","device":"${img}","fstype":"ext4","options":["ro"]}`);
    assert.strictEqual(again.code, 1, 're-add that changes the entry is refused too');
    assert.match(again.err, /recorded as used by sandbox pod-a .*katavol does not change it/);
    assert.strictEqual(katavol('direct-volume', 'add', '/v', mi(img)).code, 0, 'an identical re-add is fine');
    const r = katavol('direct-volume', 'remove', '--force', '/v');
    assert.deepStrictEqual([r.code, r.out], [0, `removed direct volume /v (${path.join(root, encodeVolumePath('/v'))})\n`]);
    assert.strictEqual(r.err, 'katavol: note: --force: removed it although it was recorded as used by sandbox pod-a(ro)\n');
    assert.strictEqual(katavol('direct-volume', 'remove', '--volume-path=-odd').code, 0);
    assert.deepStrictEqual(fs.readdirSync(root).filter((n) => !n.startsWith('.')), []);
  });

  it('list: a table for people (options, MISSING devices, reasons below the table), --json for machines, broken entries flagged', () => {
    assert.strictEqual(katavol('direct-volume', 'list').out, `no direct volumes registered in ${root}\n`);
    katavol('direct-volume', 'add', '/b', mi(img));
    const gone = mkExt4(scratch, 'gone.img', 16 << 20);
    katavol('direct-volume', 'add', '/d', `{"volume-type":"directvol","device":"${gone}","fstype":"ext4","options":["noatime","discard"]}`);
    fs.rmSync(gone);
    katavol('direct-volume', 'add', '/a', '{"volume-type":"vfiovol","device":"0000:3b:00.1","fstype":"xfs","options":["ro"]}');
    fs.mkdirSync(path.join(root, encodeVolumePath('/c')));
    // Sandbox records of /b: read-only, read-write, and an empty one as Kata's Go runtime writes.
    fs.writeFileSync(path.join(root, encodeVolumePath('/b'), 'pod-a'), 'runtime-rs ro');
    fs.writeFileSync(path.join(root, encodeVolumePath('/b'), 'pod-b'), 'runc');
    fs.writeFileSync(path.join(root, encodeVolumePath('/b'), 'pod-c'), '');
    const t = katavol('direct-volume', 'list');
    assert.strictEqual(t.code, 0);
    const lines = t.out.trimEnd().split('\n');
    assert.match(lines[0], /^VOLUME PATH\s+TYPE\s+DEVICE\s+FSTYPE\s+OPTIONS\s+STATE\s+SANDBOXES$/);
    assert.match(lines[1], /^\/a\s+vfiovol\s+0000:3b:00\.1\s+xfs\s+ro\s+(MISSING|ok)\s+-$/);
    assert.match(lines[2], new RegExp(`^/b\\s+directvol\\s+${img}\\s+ext4\\s+-\\s+ok\\s+pod-a\\(ro\\),pod-b,pod-c$`));
    assert.match(lines[3], /^\/c\s+-\s+-\s+-\s+-\s+BROKEN\s+-$/);
    assert.match(lines[4], new RegExp(`^/d\\s+directvol\\s+${gone}\\s+ext4\\s+noatime,discard\\s+MISSING\\s+-$`));
    // Columns line up: every row's STATE starts where the header's does.
    const col = lines[0].indexOf('STATE');
    for (const l of lines.slice(1, 5)) assert.match(l.slice(col), /^(ok|MISSING|BROKEN)\b/, l);
    assert.strictEqual(lines[5], '');
    assert.ok(lines.slice(6).some((l) => /^\/c: BROKEN: .*has no mountInfo\.json/.test(l)));
    assert.ok(lines.slice(6).some((l) => new RegExp(`^/d: MISSING: device ${gone} is not on this host`).test(l)));
    const j = JSON.parse(katavol('direct-volume', 'list', '--json').out) as Array<Record<string, unknown>>;
    assert.deepStrictEqual(j[0], {
      volumePath: '/a', directory: path.join(root, encodeVolumePath('/a')),
      mountInfo: { 'volume-type': 'vfiovol', device: '0000:3b:00.1', fstype: 'xfs', options: ['ro'] }, state: j[0].state, sandboxes: [],
    });
    assert.ok(['ok', 'MISSING'].includes(String(j[0].state)));
    assert.strictEqual(j[3].state, 'MISSING');
    assert.deepStrictEqual(j[1].sandboxes, [
      { id: 'pod-a', backend: 'runtime-rs', readOnly: true }, { id: 'pod-b', backend: 'runc', readOnly: false }, { id: 'pod-c', backend: '', readOnly: false },
    ]);
    assert.match(String(j[2].error), /has no mountInfo\.json/);
  });

  it('inspect: stored mountInfo, directory, canonical flag and the stored bytes of a legacy entry, sandboxes', () => {
    katavol('direct-volume', 'add', '/v', mi(img));
    const dir = path.join(root, encodeVolumePath('/v'));
    const legacy = `{"volume_type":"directvol","device":"${img}","fs_type":"ext4"}`;
    fs.writeFileSync(path.join(dir, 'mountInfo.json'), legacy);
    fs.writeFileSync(path.join(dir, 'sb1'), 'runc');
    fs.writeFileSync(path.join(dir, 'sb2'), 'runtime-rs ro\n');
    const r = katavol('direct-volume', 'inspect', '/v');
    assert.strictEqual(r.code, 0, r.err);
    assert.deepStrictEqual(JSON.parse(r.out), {
      volumePath: '/v', directory: dir, file: path.join(dir, 'mountInfo.json'),
      mountInfo: { 'volume-type': 'directvol', device: img, fstype: 'ext4' },
      canonical: false, stored: legacy,
      sandboxes: [{ id: 'sb1', backend: 'runc', readOnly: false }, { id: 'sb2', backend: 'runtime-rs', readOnly: true }],
    });
    assert.strictEqual(katavol('direct-volume', 'inspect', '/missing').code, 1);
  });

  it('stats prints host-side JSON; resize grows the image (positional and --size)', () => {
    katavol('direct-volume', 'add', '/v', mi(img));
    const s = katavol('direct-volume', 'stats', '/v');
    assert.strictEqual(s.code, 0, s.err);
    const stats = JSON.parse(s.out) as { sizeBytes: number; usage: { totalBytes: number } };
    assert.deepStrictEqual([stats.sizeBytes, stats.usage.totalBytes], [16 << 20, 16 << 20]);
    const r = katavol('direct-volume', 'resize', '/v', '32M');
    assert.strictEqual(r.code, 0, r.err);
    assert.strictEqual(r.out, `resized direct volume /v: ${img} 16 MiB -> 32 MiB; ext4 filesystem grown to fill it\n`);
    assert.strictEqual(katavol('direct-volume', 'resize', '--volume-path', '/v', '--size', String(48 << 20)).code, 0);
    assert.strictEqual((JSON.parse(katavol('direct-volume', 'stats', '--volume-path', '/v').out) as { usage: { totalBytes: number } }).usage.totalBytes, 48 << 20);
    const shrink = katavol('direct-volume', 'resize', '/v', '1M');
    assert.strictEqual(shrink.code, 1);
    assert.match(shrink.err, /never shrinks/);
  });

  it('stays lean: the direct-volume paths load neither winston nor protobufjs', () => {
    const probe = `
      process.env.KATAVOL_VOLUME_ROOT = ${JSON.stringify(root)};
      require(${JSON.stringify(path.join(REPO, 'dist', 'src', 'cli', 'main.js'))}).main(['direct-volume', 'list']);
      process.on('exit', () => {
        const heavy = Object.keys(require.cache).filter((k) => /node_modules\\/(winston|protobufjs|@grpc)/.test(k));
        process.stderr.write('HEAVY=' + heavy.length);
      });`;
    const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
    assert.match(r.stderr, /HEAVY=0$/);
    assert.match(r.stdout, /no direct volumes registered/);
  });
});

describe('katavol CLI volume root', () => {
  it('uses the shim config\'s volumeRoot when KATAVOL_VOLUME_ROOT is unset, and the env var wins', () => {
    const scratch = scratchDir('cli-root');
    const fromConfig = path.join(scratch, 'from-config');
    const fromEnv = path.join(scratch, 'from-env');
    const cfg = path.join(scratch, 'katavol.json');
    fs.writeFileSync(cfg, JSON.stringify({ backend: 'runc', volumeRoot: fromConfig }));
    const img = mkExt4(scratch, 'disk.img', 16 << 20);
    const mi = `{"volume-type":"directvol","device":"${img}","fstype":"ext4"}`;
    const env: NodeJS.ProcessEnv = { ...process.env, KATAVOL_CONFIG: cfg };
    delete env.KATAVOL_VOLUME_ROOT;
    let r = spawnSync(process.execPath, [BIN, 'direct-volume', 'add', '/kubelet/cfg', mi], { encoding: 'utf8', env });
    assert.strictEqual(r.status, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(fromConfig, encodeVolumePath('/kubelet/cfg'), 'mountInfo.json')));
    r = spawnSync(process.execPath, [BIN, 'direct-volume', 'add', '/kubelet/env', mi], { encoding: 'utf8', env: { ...env, KATAVOL_VOLUME_ROOT: fromEnv } });
    assert.strictEqual(r.status, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(fromEnv, encodeVolumePath('/kubelet/env'), 'mountInfo.json')));
    // The help says which root is in effect and where it came from.
    r = spawnSync(process.execPath, [BIN, 'direct-volume', 'list', '--help'], { encoding: 'utf8', env });
    assert.match(r.stdout, new RegExp(`Registry root in effect: ${fromConfig} \\(from "volumeRoot" in ${cfg};`));
    r = spawnSync(process.execPath, [BIN, 'direct-volume', '--help'], { encoding: 'utf8', env: { ...env, KATAVOL_VOLUME_ROOT: fromEnv } });
    assert.match(r.stdout, new RegExp(`Registry root in effect: ${fromEnv} \\(from \\$KATAVOL_VOLUME_ROOT;`));
    fs.writeFileSync(cfg, '{broken');
    r = spawnSync(process.execPath, [BIN, 'direct-volume', 'list'], { encoding: 'utf8', env: { ...env, KATAVOL_VOLUME_ROOT: fromEnv } });
    assert.strictEqual(r.status, 0, r.stderr);
    fs.rmSync(scratch, { recursive: true, force: true });
  });
});

describe('katavol CLI: help, version, mistakes', () => {
  const run = (args: string[], env: NodeJS.ProcessEnv = process.env) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env });
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  };

  it('--version prints the package version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) assert.deepStrictEqual(run([flag]), { code: 0, out: `katavol ${pkg.version}\n`, err: '' });
  });

  it('per-subcommand --help: arguments, and for add the mountInfo field reference with examples', () => {
    const add = run(['direct-volume', 'add', '--help']);
    assert.strictEqual(add.code, 0);
    for (const re of [/^usage: katavol direct-volume add \[--force\] <volume-path> '<mount-info-json>'/, /"volume-type"\s+required\s+directvol/, /"device"\s+required/,
      /"fstype"\s+required/, /"metadata"\s+optional\s+object of string values/, /"options"\s+optional\s+list of mount options/, /legacy keys volume_type and fs_type/,
      /katavol direct-volume add \/kubelet\/spdk1 '\{"volume-type":"spdkvol"/, /Registry root in effect: /]) assert.match(add.out, re);
    assert.match(run(['direct-volume', 'remove', '-h']).out, /^usage: katavol direct-volume remove \[--force\][\s\S]*--force removes it anyway/);
    assert.match(run(['direct-volume', 'resize', '--help']).out, /CAP_SYS_RESOURCE/);
    assert.match(run(['direct-volume', 'list', '--help']).out, /MISSING/);
    for (const sub of ['stats', 'inspect']) assert.match(run(['direct-volume', sub, '--help']).out, new RegExp(`^usage: katavol direct-volume ${sub} <volume-path>`));
  });

  it('"did you mean" for mistyped commands, and kata-ctl habits (katavol add ...)', () => {
    let r = run(['direct-volume', 'lsit']);
    assert.strictEqual(r.code, 2);
    assert.match(r.err, /unknown direct-volume command "lsit"; did you mean "list"\?/);
    r = run(['direct-volum', 'list']);
    assert.match(r.err, /unknown command "direct-volum"; did you mean "katavol direct-volume"\?/);
    r = run(['add', '/x', '{}']);
    assert.match(r.err, /unknown command "add"; did you mean "katavol direct-volume add"\?/);
    assert.doesNotMatch(run(['frobnicate']).err, /did you mean/);
  });

  it('swapped add arguments (JSON first) are named as such, exit 2, nothing written', () => {
    const scratch = scratchDir('cli-swap');
    const r = run(['direct-volume', 'add', '{"volume-type":"directvol","device":"/x.img","fstype":"ext4"}', '/kubelet/v'], { ...process.env, KATAVOL_VOLUME_ROOT: path.join(scratch, 'root') });
    assert.strictEqual(r.code, 2);
    assert.match(r.err, /the arguments look swapped: .* is JSON and "\/kubelet\/v" is not; the volume path comes first/);
    assert.ok(!fs.existsSync(path.join(scratch, 'root')));
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('config check [FILE] runs the shim\'s config code: ok with a summary, or exit 1 naming the file and key', () => {
    const scratch = scratchDir('cli-config');
    const file = path.join(scratch, 'c.json');
    const check = (cfg: unknown, env: NodeJS.ProcessEnv = process.env, args = [file]) => {
      fs.writeFileSync(file, typeof cfg === 'string' ? cfg : JSON.stringify(cfg));
      return run(['config', 'check', ...args], env);
    };
    const envNoRoot = { ...process.env };
    delete envNoRoot.KATAVOL_VOLUME_ROOT;
    let r = check({ backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2', socketDir: '/tmp/kv', volumeRoot: '/srv/volumes', logFormat: 'json' }, envNoRoot);
    assert.strictEqual(r.code, 0, r.err);
    assert.strictEqual(r.out, `config ${file}: ok (backend runc, downstream /usr/bin/containerd-shim-runc-v2, socketDir /tmp/kv, volume root /srv/volumes from "volumeRoot" in ${file}, log info json)\n`);
    r = check({ backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2' }, { ...envNoRoot, KATAVOL_CONFIG: file }, []);
    assert.strictEqual(r.code, 0, 'FILE defaults to $KATAVOL_CONFIG');
    for (const [cfg, re] of [
      [{ backnd: 'runc' }, /katavol config .*c\.json: key "backnd": unknown key/],
      ['{"backend": "runc",}', /not valid JSON/],
      [{ backend: 'runc', downstream: '/nonexistent/shim' }, /key "downstream": downstream shim "\/nonexistent\/shim" is not an executable file/],
      [{ backend: 'runc', downstream: path.join(REPO, 'bin', 'containerd-shim-katavol-v2') }, /resolves to katavol itself/],
      [{ backend: 'runtime-rs', downstream: '/usr/bin/containerd-shim-runc-v2', runtimeRs: { blockDeviceDriver: 'virtio-scsi' } }, /key "runtimeRs\.blockDeviceDriver"/],
    ] as Array<[unknown, RegExp]>) {
      r = check(cfg);
      assert.strictEqual(r.code, 1, JSON.stringify(cfg));
      assert.match(r.err, re);
      assert.doesNotMatch(r.err, /^katavol: katavol/);
    }
    assert.strictEqual(run(['config', 'check', path.join(scratch, 'missing.json')]).code, 1);
    assert.match(run(['config', 'chek']).err, /did you mean "check"/);
    fs.rmSync(scratch, { recursive: true, force: true });
  });
});
