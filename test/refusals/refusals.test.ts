// Runs every row of the bad-input catalogue (test/refusals/catalogue.ts) through the real code path and
// checks three things: the answer carries the row's exact error text (and no TypeError or stack), nothing
// changed (every file under the scratch directory, the registry and the bundle included, is byte for byte
// as before), and docs/refusals.md is the table rendered from these rows (`make refusals-doc` writes it).
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { Writable } from 'stream';
import { spawnSync } from 'child_process';
import { FrameType, Server, codeName, encodeFrame, encodeRequest } from '../../src/ttrpc';
import { CreateInterceptor, CreateRefused } from '../../src/shim/interceptor';
import { ProxyConnection } from '../../src/shim/proxy';
import { createLogger } from '../../src/shim/logger';
import { createBackend } from '../../src/backends';
import { Registry } from '../../src/volumes/registry';
import { RawListener, RawPeer } from '../support/ttrpc';
import { makeExt4Image } from '../support/containerd';
import { removeDir, scratchDir, snapshot } from '../support/scratch';
import { type FrameInput, type Odd, ROWS, type Row, renderRefusals } from './catalogue';

const REPO = path.resolve(__dirname, '..', '..', '..');
const KATAVOL = path.join(REPO, 'bin', 'katavol');
const SHIM_JS = path.join(REPO, 'dist', 'src', 'shim', 'bin.js');
const SELF = path.join(REPO, 'bin', 'containerd-shim-katavol-v2');
const DOC = path.join(REPO, 'docs', 'refusals.md');
const SVC = 'refusals.v1.Svc';
const LEAKS = /TypeError|ReferenceError|is not a function|Cannot read propert|unexpected error|\n\s+at .*\.js:\d+/;

/** Puts `what` at `file`: text, or a FIFO, socket, link, directory, nothing, or a file of n bytes. */
function place(file: string, what: string | Odd): void {
  fs.rmSync(file, { recursive: true, force: true });
  if (typeof what === 'string') fs.writeFileSync(file, what);
  else if ('fifo' in what) assert.equal(spawnSync('mkfifo', [file]).status, 0);
  else if ('socket' in what) assert.equal(spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(file)})`]).status, 0);
  else if ('symlinkTo' in what) fs.symlinkSync(what.symlinkTo, file);
  else if ('dir' in what) fs.mkdirSync(file);
  else if ('bytes' in what) fs.writeFileSync(file, Buffer.alloc(what.bytes, 0x20));
}

describe('bad-input catalogue (docs/refusals.md): every refusal through its real path, nothing changed', function () {
  this.timeout(60000);
  let dir: string;
  let root: string;
  let bundle: string;
  let cfgFile: string;
  let img: string;
  let registry: Registry;
  const sub = (s: string): string => s.replace(/\$IMG/g, img).replace(/\$ROOT/g, root).replace(/\$BUNDLE/g, bundle).replace(/\$CFG/g, cfgFile).replace(/\$SELF/g, SELF).replace(/\$DIR/g, dir);
  const silent = () => createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
  const okMountInfo = () => JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' });

  before(() => {
    dir = scratchDir('refusals');
    root = path.join(dir, 'root');
    bundle = path.join(dir, 'bundle');
    cfgFile = path.join(dir, 'config.json');
    img = path.join(dir, 'disk.img');
    makeExt4Image(img, 1);
    makeExt4Image(path.join(dir, 'other.img'), 1);
    place(path.join(dir, 'fifo'), { fifo: true });
    registry = new Registry(root);
    for (const v of ['/kubelet/ok', '/kubelet/used', '/kubelet/hand']) registry.add(v, okMountInfo());
    registry.recordSandbox('/kubelet/used', 'pod-a', 'runtime-rs', false);
    fs.mkdirSync(bundle);
  });
  after(() => removeDir(dir));

  beforeEach(() => {
    // Every row starts from the same state: the shim config, the bundle and /kubelet/hand as set up.
    fs.writeFileSync(cfgFile, JSON.stringify({ backend: 'runtime-rs', socketDir: path.join(dir, 's') }));
    place(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.1.0', mounts: [] }));
    place(registry.mountInfoFile('/kubelet/hand'), okMountInfo());
  });

  /** Runs a row; returns the text the user (or containerd) gets. */
  async function run(row: Row): Promise<string> {
    const v = row.via;
    if ('cli' in v) {
      const env = { ...process.env, KATAVOL_VOLUME_ROOT: root, KATAVOL_CONFIG: cfgFile, ...Object.fromEntries(Object.entries(v.env ?? {}).map(([k, x]) => [k, sub(x)])) };
      const r = spawnSync(process.execPath, [KATAVOL, ...v.cli.map(sub)], { cwd: dir, env, encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, v.exit, `exit status; stderr: ${r.stderr}`);
      assert.equal(r.stdout, '', 'a refusal prints nothing on stdout');
      assert.match(r.stderr, /^katavol: /);
      return r.stderr;
    }
    if ('shimStart' in v) {
      const env = { ...process.env, KATAVOL_VOLUME_ROOT: root, KATAVOL_CONFIG: cfgFile, ...Object.fromEntries(Object.entries(v.env ?? {}).map(([k, x]) => [k, sub(x)])) };
      const args = ['-namespace', 'katavol-refusals', '-address', path.join(dir, 'containerd.sock'), '-publish-binary', '/bin/true', '-id', 'c1', 'start'];
      const r = spawnSync(process.execPath, [SHIM_JS, ...args], { cwd: bundle, env, input: '', encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 1, `exit status; stderr: ${r.stderr}`);
      assert.equal(r.stdout, '', 'no address printed');
      assert.match(r.stderr, /^containerd-shim-katavol-v2: /);
      return r.stderr;
    }
    if ('create' in v) return await refusedCreate();
    return await answerTo(v.frames, v.to);
  }

  async function refusedCreate(): Promise<string> {
    const icp = new CreateInterceptor({ volumeRoot: root, log: silent(), makeBackend: () => createBackend('runtime-rs', { config: { file: cfgFile }, volumeRoot: root }) });
    try {
      const r = await icp.create('c1', bundle);
      if (r) await r.rollback('the test expected a refusal');
    } catch (e) {
      assert.ok(e instanceof CreateRefused, `not a CreateRefused: ${(e as Error).stack}`);
      assert.equal(e.code, 9);
      assert.match(e.message, /^katavol: container "c1": /);
      return e.message;
    }
    return assert.fail('Create was not refused');
  }

  function encode(f: FrameInput): Buffer {
    let body: Buffer;
    if (f.request) body = Buffer.from(encodeRequest({ service: f.request.service, method: f.request.method, payload: Buffer.from(f.request.payloadHex ?? '', 'hex'), timeoutNano: f.request.timeoutNano ?? 0 }));
    else if (f.create) {
      const str = (field: number, s: string) => { const b = Buffer.from(sub(s)); return Buffer.concat([Buffer.from([(field << 3) | 2, b.length]), b]); };
      body = Buffer.from(encodeRequest({ service: 'containerd.task.v2.Task', method: 'Create', payload: Buffer.concat([str(1, f.create.id), str(2, f.create.bundle)]) }));
    } else if (f.zeroBytes !== undefined) body = Buffer.alloc(f.zeroBytes);
    else body = Buffer.from(f.bodyHex ?? '', 'hex');
    return encodeFrame(f.streamId, f.type ?? FrameType.Request, f.flags ?? 0, body);
  }

  /** Sends the frames on one connection; returns the status of the last answer, as "Code: message". */
  async function answerTo(frames: FrameInput[], to: 'server' | 'proxy'): Promise<string> {
    const sock = path.join(dir, 'serve.sock');
    let calls = 0;
    const cleanups: Array<() => unknown> = [];
    let downstream: RawListener | undefined;
    try {
      if (to === 'server') {
        const server = new Server({ onError: () => undefined });
        server.register(SVC, { Echo: (_c, p) => { calls++; return p; } });
        await server.listen(sock);
        cleanups.push(() => server.close());
      } else {
        // containerd -> ProxyConnection -> a downstream that records what reaches it.
        downstream = new RawListener(path.join(dir, 'down.sock'));
        await downstream.listen();
        const icp = new CreateInterceptor({ volumeRoot: root, log: silent(), makeBackend: () => createBackend('runtime-rs', { config: { file: cfgFile }, volumeRoot: root }) });
        const up = net.createServer((s) => new ProxyConnection(s, path.join(dir, 'down.sock'), { interceptor: icp, log: silent(), onClosed: () => undefined }));
        await new Promise<void>((r) => up.listen(sock, r));
        cleanups.push(() => downstream?.close(), () => up.close());
      }
      const peer = await RawPeer.connect(sock);
      cleanups.push(() => peer.destroy());
      for (const f of frames) peer.write(encode(f));
      const answers: string[] = [];
      for (let i = 0; i < frames.length; i++) {
        const { res } = await peer.nextResponse();
        answers.push(res.status ? `${codeName(res.status.code)}: ${res.status.message}` : 'OK');
      }
      if (to === 'server') {
        // The connection still serves, and no refused frame reached a handler.
        const okCalls = answers.filter((a) => a === 'OK').length;
        assert.equal(calls, okCalls, 'only the valid requests reached the handler');
        peer.write(encodeFrame(0x7ffffff1, FrameType.Request, 0, encodeRequest({ service: SVC, method: 'Echo', payload: Buffer.from('alive') })));
        assert.equal((await peer.nextResponse()).res.status?.code ?? 0, 0, 'the connection still serves');
      } else {
        // Nothing reached the downstream.
        const accepted = await downstream?.accept();
        await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(accepted?.frames ?? [], [], 'the refused frame was not forwarded');
      }
      return answers[answers.length - 1];
    } finally {
      for (const c of cleanups.reverse()) await c();
      fs.rmSync(sock, { force: true });
      fs.rmSync(path.join(dir, 'down.sock'), { force: true });
    }
  }

  it(`has at least 60 rows, every area covered (${ROWS.length} rows)`, () => {
    assert.ok(ROWS.length >= 60);
    for (const area of ['CLI arguments', 'mountInfo.json', 'shim config', 'OCI spec', 'TTRPC frame', 'environment']) {
      assert.ok(ROWS.some((r) => r.area === area), area);
    }
  });

  for (const [i, row] of ROWS.entries()) {
    it(`${row.area} #${i + 1}: ${row.why}`, async () => {
      // Inputs of the row go in first; the state they make is what must not change.
      const v = row.via;
      if ('create' in v) {
        place(path.join(bundle, 'config.json'), typeof v.create === 'string' ? sub(v.create) : v.create);
        if (v.mountInfo !== undefined) place(registry.mountInfoFile('/kubelet/hand'), typeof v.mountInfo === 'string' ? sub(v.mountInfo) : v.mountInfo);
      }
      if ('shimStart' in v && v.config !== undefined) fs.writeFileSync(cfgFile, sub(v.config));
      if ('frames' in v && v.to === 'proxy') place(path.join(bundle, 'config.json'), '{"annotations":[1],"mounts":[]}');
      const before = snapshot(dir);
      const text = await run(row);
      assert.ok(text.includes(sub(row.error)), `expected ${JSON.stringify(sub(row.error))} in:\n${text}`);
      assert.doesNotMatch(text, LEAKS);
      assert.deepEqual(snapshot(dir), before, 'the refusal changed files');
    });
  }

  it('docs/refusals.md is the table rendered from these rows (make refusals-doc)', () => {
    assert.equal(fs.readFileSync(DOC, 'utf8'), renderRefusals(), 'docs/refusals.md differs from test/refusals/catalogue.ts: run make refusals-doc');
  });
});
