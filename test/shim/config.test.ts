// The shim's command line and config: what containerd passes, and clear errors naming file and key.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { parseShimArgs, FlagError } from '../../src/shim/args';
import { checkDownstream, ConfigError, KATA_DOWNSTREAM, loadConfig } from '../../src/shim/config';
import { ourAddress } from '../../src/shim/start';
import { SHIM, tmpDir } from '../support/containerd';

describe('shim args', () => {
  it('parses the argv containerd passes for start and delete', () => {
    const a = parseShimArgs(['-namespace', 'default', '-address', '/run/c.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'c1', '-debug', 'start']);
    assert.deepEqual([a.namespace, a.address, a.publishBinary, a.id, a.debug, a.action], ['default', '/run/c.sock', '/usr/bin/containerd', 'c1', true, 'start']);
    const d = parseShimArgs(['--namespace=ns', '-id', 'x', '-bundle', '/b', 'delete']);
    assert.deepEqual([d.namespace, d.id, d.bundle, d.action, d.debug], ['ns', 'x', '/b', 'delete', false]);
    assert.equal(parseShimArgs(['-namespace', 'n', '-id', 'i']).action, '');
  });
  it('rejects unknown flags and missing values like Go flag does', () => {
    assert.throws(() => parseShimArgs(['-bogus', 'start']), (e: Error) => e instanceof FlagError && /flag provided but not defined: -bogus/.test(e.message));
    assert.throws(() => parseShimArgs(['-id']), /flag needs an argument: -id/);
  });
});

describe('shim binary flags', () => {
  it('-v prints the version', () => {
    const r = spawnSync(SHIM, ['-v'], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    assert.match(r.stdout, /Version:\s+\d+\.\d+\.\d+/);
  });
  it('an unknown flag prints usage on stderr and exits 2', () => {
    const r = spawnSync(SHIM, ['-nope'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /flag provided but not defined: -nope/);
    assert.match(r.stderr, /Usage of containerd-shim-katavol-v2/);
    assert.equal(r.stdout, '');
  });
  it('-h and -help print the usage on stdout and exit 0', () => {
    for (const flag of ['-h', '-help', '--help']) {
      const r = spawnSync(SHIM, [flag], { encoding: 'utf8' });
      assert.equal(r.status, 0, flag);
      assert.match(r.stdout, /^Usage of containerd-shim-katavol-v2:[\s\S]*-h, -help[\s\S]*actions: start \| delete/, flag);
    }
  });
  it('run by hand with no arguments or an unknown action: usage and exit 2, no daemon started', () => {
    const dir = tmpDir();
    for (const args of [[], ['stat'], ['-namespace', 'n', '-id', 'i', 'serve']]) {
      const r = spawnSync(SHIM, args, { encoding: 'utf8', cwd: dir, timeout: 30000 });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, args.length ? /unknown action "(stat|serve)" \(actions: start, delete\)/ : /no arguments/);
      assert.match(r.stderr, /Usage of containerd-shim-katavol-v2/);
    }
    assert.deepEqual(fs.readdirSync(dir), [], 'nothing written in the working directory');
    fs.rmSync(dir, { recursive: true });
  });
  it('a failing action prints one "containerd-shim-katavol-v2: <error>" line on stderr, nothing on stdout, and exits 1', () => {
    const dir = tmpDir();
    const cfg = path.join(dir, 'c.json');
    fs.writeFileSync(cfg, '{"backend": ');
    const argv = ['-namespace', 'n', '-address', path.join(dir, 'c.sock'), '-id', 'c1'];
    for (const action of ['delete', 'start']) {
      const r = spawnSync(SHIM, [...argv, action], { encoding: 'utf8', cwd: dir, env: { ...process.env, KATAVOL_CONFIG: cfg }, input: '', timeout: 60000 });
      assert.equal(r.status, 1, `${action}: ${r.stderr}`);
      assert.equal(r.stdout, '', action);
      assert.match(r.stderr, new RegExp(`^containerd-shim-katavol-v2: katavol config ${cfg}: not valid JSON \\(.+\\); fix the file$`), action);
      assert.equal(r.stderr.split('containerd-shim-katavol-v2:').length, 2, `one prefix: ${r.stderr}`);
    }
    fs.rmSync(dir, { recursive: true });
  });
  it('the daemon (flags, no action) in a bundle no start prepared: one prefixed line, exit 1', () => {
    const dir = tmpDir();
    const r = spawnSync(SHIM, ['-namespace', 'n', '-address', path.join(dir, 'c.sock'), '-id', 'c1', '-bundle', dir], { encoding: 'utf8', input: '', timeout: 60000 });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `containerd-shim-katavol-v2: no katavol.json in ${dir}: the daemon serves only a bundle our start has prepared`);
    fs.rmSync(dir, { recursive: true });
  });
  it('-info with a downstream that lacks it (containerd 1.6\'s runc shim) says so instead of printing the downstream\'s usage', () => {
    const dir = tmpDir();
    const cfg = path.join(dir, 'c.json');
    fs.writeFileSync(cfg, JSON.stringify({ backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2' }));
    const r = spawnSync(SHIM, ['-info'], { encoding: 'utf8', env: { ...process.env, KATAVOL_CONFIG: cfg }, input: '' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^containerd-shim-katavol-v2: -info: the downstream shim \/usr\/bin\/containerd-shim-runc-v2 does not support -info/);
    assert.doesNotMatch(r.stderr, /Usage of/);
    fs.rmSync(dir, { recursive: true });
  });
  it('start with a bad config fails with the file and key in the message', () => {
    const dir = tmpDir();
    const cfg = path.join(dir, 'c.json');
    fs.writeFileSync(cfg, JSON.stringify({ backend: 'qemu' }));
    const r = spawnSync(SHIM, ['-namespace', 'n', '-address', '/x', '-id', 'i', 'start'], { encoding: 'utf8', cwd: dir, env: { ...process.env, KATAVOL_CONFIG: cfg }, input: '' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`katavol config ${cfg}: key "backend": "qemu" is not a backend`));
    assert.equal(r.stdout, '');
    fs.rmSync(dir, { recursive: true });
  });
  it('-info forwards to the downstream shim and returns its bytes', () => {
    const dir = tmpDir();
    const fake = path.join(dir, 'fake-shim');
    fs.writeFileSync(fake, '#!/bin/sh\n[ "$1" = "-info" ] && printf "\\022\\003\\n\\0011" && exit 0\nexit 9\n', { mode: 0o755 });
    const cfg = path.join(dir, 'c.json');
    fs.writeFileSync(cfg, JSON.stringify({ backend: 'runc', downstream: fake }));
    const r = spawnSync(SHIM, ['-info'], { env: { ...process.env, KATAVOL_CONFIG: cfg }, input: '' });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.deepEqual([...r.stdout], [0x12, 0x03, 0x0a, 0x01, 0x31]);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('shim config', () => {
  let dir: string;
  beforeEach(() => { dir = tmpDir(); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (obj: unknown) => {
    const f = path.join(dir, 'config.json');
    fs.writeFileSync(f, typeof obj === 'string' ? obj : JSON.stringify(obj));
    return { KATAVOL_CONFIG: f, PATH: process.env.PATH } as NodeJS.ProcessEnv;
  };

  it('defaults to runtime-rs with Kata\'s shim when the default file is absent', function () {
    // The default path is fixed; on a host where katavol is configured there is nothing to check.
    if (fs.existsSync('/etc/katavol/config.json')) this.skip();
    const c = loadConfig({ KATAVOL_CONFIG: '', PATH: '/nonexistent' });
    assert.equal(c.backend, 'runtime-rs');
    assert.equal(c.downstream, KATA_DOWNSTREAM);
    assert.equal(c.socketDir, '/run/katavol');
    assert.equal(c.volumeRoot, undefined);
    assert.equal(c.warmDaemons, 1);
  });
  it('warmDaemons: an integer, 0 turns the pool off', () => {
    assert.equal(loadConfig(write({ backend: 'runc' })).warmDaemons, 1);
    assert.equal(loadConfig(write({ backend: 'runc', warmDaemons: 0 })).warmDaemons, 0);
    assert.equal(loadConfig(write({ backend: 'runc', warmDaemons: 8 })).warmDaemons, 8);
  });
  it('runc backend finds containerd-shim-runc-v2 on PATH', () => {
    const c = loadConfig(write({ backend: 'runc' }));
    assert.equal(c.downstream, '/usr/bin/containerd-shim-runc-v2');
  });
  it('an explicit KATAVOL_CONFIG that is missing is an error', () => {
    assert.throws(() => loadConfig({ KATAVOL_CONFIG: path.join(dir, 'nope.json') }), (e: Error) => e instanceof ConfigError && /nope\.json: cannot read/.test(e.message));
  });
  for (const [name, body, re] of [
    ['bad JSON', '{', /not valid JSON/],
    ['non-object', '[]', /must be a JSON object/],
    ['unknown key', { backnd: 'runc' }, /key "backnd": unknown key/],
    ['relative downstream', { downstream: 'shim' }, /key "downstream": must be an absolute path/],
    ['bad log level', { logLevel: 'loud' }, /key "logLevel": "loud" is not a level/],
    ['bad log format', { logFormat: 'logfmt' }, /key "logFormat": "logfmt" is not a log format; use "text" \(containerd's logrus format\) or "json"/],
    ['non-string', { volumeRoot: 3 }, /key "volumeRoot": must be a non-empty string/],
    ['long socketDir', { socketDir: '/' + 'x'.repeat(60) }, /key "socketDir": .* too long/],
    ['negative warmDaemons', { warmDaemons: -1 }, /key "warmDaemons": must be an integer from 0 \(no pre-booted daemons\) to 64, got -1/],
    ['fractional warmDaemons', { warmDaemons: 1.5 }, /key "warmDaemons": must be an integer .* got 1\.5/],
    ['string warmDaemons', { warmDaemons: '2' }, /key "warmDaemons": must be an integer .* got "2"/],
    ['huge warmDaemons', { warmDaemons: 1000 }, /key "warmDaemons": must be an integer from 0 .* to 64/],
  ] as Array<[string, unknown, RegExp]>) {
    it(`rejects ${name} naming the file`, () => {
      const env = write(body);
      assert.throws(() => loadConfig(env), (e: Error) => e instanceof ConfigError && e.message.includes(env.KATAVOL_CONFIG!) && re.test(e.message));
    });
  }
  it('refuses a downstream that resolves to katavol itself, also through a symlink', () => {
    const link = path.join(dir, 'containerd-shim-kata-v2');
    fs.symlinkSync(SHIM, link);
    const c = loadConfig(write({ backend: 'runtime-rs', downstream: link }));
    assert.throws(() => checkDownstream(c, '/somewhere/else'), /resolves to katavol itself/);
    const copy = path.join(dir, 'copy-of-launcher');
    fs.copyFileSync(SHIM, copy);
    fs.chmodSync(copy, 0o755);
    assert.throws(() => checkDownstream(loadConfig(write({ downstream: copy })), '/x'), /resolves to katavol itself/);
    assert.throws(() => checkDownstream(loadConfig(write({ downstream: path.join(dir, 'missing') })), '/x'), /is not an executable file/);
    checkDownstream(loadConfig(write({ backend: 'runc' })), SHIM);
  });
});

describe('shim start helpers', () => {
  it('derives one address per downstream address, short enough for sun_path', () => {
    const a = ourAddress('/run/katavol', 'unix:///run/containerd/s/0123');
    assert.equal(a, ourAddress('/run/katavol', 'unix:///run/containerd/s/0123'));
    assert.notEqual(a, ourAddress('/run/katavol', 'unix:///run/containerd/s/0124'));
    assert.ok(a.length - 'unix://'.length <= 106);
  });
});

describe('shim start-up stays lean', () => {
  // containerd runs the binary for every container start and delete; the daemon sits before Create.
  const loaded = (mods: string[]) => {
    const code = `${mods.map((m) => `require(${JSON.stringify(m)});`).join('')}
      process.stdout.write(JSON.stringify(Object.keys(require.cache).filter((k) => /node_modules\\/(winston|protobufjs|@grpc)/.test(k))));`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as string[];
  };
  const dist = path.resolve(__dirname, '..', '..', 'src', 'shim');
  it('start, delete and -v load neither winston nor protobufjs', () => {
    assert.deepEqual(loaded([path.join(dist, 'main.js'), path.join(dist, 'start.js'), path.join(dist, 'delete.js')]), []);
  });
  it('the daemon loads no protobufjs, and winston only once its logger is flushed', () => {
    assert.deepEqual(loaded([path.join(dist, 'daemon.js'), path.join(dist, 'proxy.js')]), []);
    const code = `const {createLogger}=require(${JSON.stringify(path.join(dist, 'logger.js'))});
      const l=createLogger({level:'info',stream:new (require('stream').Writable)({write:(c,e,cb)=>cb()}),loadAfterIdleMs:10000});
      l.info('x'); const before=Object.keys(require.cache).some((k)=>k.includes('/winston/')); l.flush();
      const after=Object.keys(require.cache).some((k)=>k.includes('/winston/')); process.stdout.write(JSON.stringify([before,after])); process.exit(0);`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
    assert.deepEqual(JSON.parse(r.stdout), [false, true]);
  });
});
