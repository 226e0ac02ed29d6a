// Seeded fuzzing of Create interception (src/shim/interceptor.ts with the runtime-rs backend, over a real
// registry on disk): hostile OCI specs and mountInfo.json files from test/shim/create-fuzz-gen.ts. Each case
// must end one of three ways: refused with code 9 and a message that is ours (no TypeError, RangeError or
// stack text), with the registry and the bundle byte for byte as before; passed through untouched (no
// direct volume); or accepted with a rewritten spec that is valid JSON, which the test rolls back, after
// which everything is as before. Never an exception of another kind, never a hang. make test runs 2,000
// cases; `make fuzz` 100,000 (SPECS=, KATAVOL_FUZZ_SPECS). TTRPC_FUZZ_SEED picks the seed and
// KATAVOL_FUZZ_CASE=n replays case n alone.
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Writable } from 'stream';
import { spawnSync } from 'child_process';
import { CreateInterceptor, CreateRefused } from '../../src/shim/interceptor';
import { createLogger } from '../../src/shim/logger';
import { createBackend } from '../../src/backends';
import { Registry } from '../../src/volumes/registry';
import { makeExt4Image } from '../support/containerd';
import { removeDir, scratchDir } from '../support/scratch';
import { type CreateCase, type OddFile, VOLUMES, createCase } from './create-fuzz-gen';

const SEED = Number(process.env.TTRPC_FUZZ_SEED ?? 0x5eed);
const CASES = Number(process.env.KATAVOL_FUZZ_SPECS ?? 2000);
const ONLY = process.env.KATAVOL_FUZZ_CASE === undefined ? undefined : Number(process.env.KATAVOL_FUZZ_CASE);
const LEAKS = /TypeError|RangeError|ReferenceError|SyntaxError: Unexpected|is not a function|Cannot read propert|Cannot convert|Maximum call stack|\n\s+at /;
const HANG_MS = 20000;

/** Every entry under dir: type, mode, and a digest of a file's bytes or a link's target. */
function tree(dir: string, out: Record<string, string> = {}, rel = ''): Record<string, string> {
  const st = fs.lstatSync(dir);
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isSymbolicLink()) out[rel] = `link ${fs.readlinkSync(dir)}`;
  else if (st.isDirectory()) {
    out[rel] = `dir ${mode}`;
    for (const n of fs.readdirSync(dir).sort()) tree(path.join(dir, n), out, `${rel}/${n}`);
  } else if (st.isFile()) {
    // Files by content (a rolled-back config.json is a new inode with the old bytes); the image by inode,
    // size and mtime, which any write to it changes (hashing it twice per case would set the pace).
    out[rel] = rel.endsWith('.img') ? `image ${mode} ${st.ino} ${st.size} ${st.mtimeMs}` : `file ${mode} ${st.size} ${crypto.createHash('sha1').update(fs.readFileSync(dir)).digest('hex')}`;
  }
  else out[rel] = `other ${st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'device'}`;
  return out;
}

describe('Create interception fuzz (seeded, hostile specs and mountInfo.json)', function () {
  this.timeout(120000 + CASES * 50);
  let dir: string;
  let root: string;
  let bundle: string;
  let img: string;
  let registry: Registry;
  let icp: CreateInterceptor;
  const sub = (s: string): string => s.replace(/\$IMG/g, img).replace(/\$NAME/g, path.basename(dir)).replace(/\$DIR/g, dir);
  const okMountInfo = () => JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' });

  before(() => {
    // On tmpfs when there is one: the registry's and the bundle's fsyncs would otherwise set the pace.
    dir = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/katavol-create-fuzz-') : scratchDir('create-fuzz');
    root = path.join(dir, 'root');
    bundle = path.join(dir, 'bundle');
    img = path.join(dir, 'disk.img');
    makeExt4Image(img, 1);
    assert.equal(spawnSync('mkfifo', [path.join(dir, 'fifo')]).status, 0);
    assert.equal(spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path.join(dir, 'sock'))})`]).status, 0);
    fs.symlinkSync(img, path.join(dir, 'link.img'));
    registry = new Registry(root);
    registry.add('/kubelet/rw', okMountInfo());
    registry.add('/kubelet/ro', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4', options: ['ro'] }));
    registry.add('/kubelet/spdk', JSON.stringify({ 'volume-type': 'spdkvol', device: path.join(dir, 'sock'), fstype: 'ext4' }));
    registry.add('/kubelet/vfio', JSON.stringify({ 'volume-type': 'vfiovol', device: '0000:00:1f.7', fstype: 'ext4' }));
    registry.add('/kubelet/used', okMountInfo());
    registry.recordSandbox('/kubelet/used', 'pod-x', 'runtime-rs', false);
    registry.add('/kubelet/hostile', okMountInfo());
    fs.mkdirSync(bundle);
    const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
    const cfgFile = path.join(dir, 'katavol.json');
    icp = new CreateInterceptor({ volumeRoot: root, log, makeBackend: () => createBackend('runtime-rs', { config: { file: cfgFile }, volumeRoot: root }) });
    assert.deepEqual(VOLUMES.filter((v) => !registry.isRegistered(v)), []);
  });
  after(() => removeDir(dir));

  const odd = (file: string, what: OddFile): void => {
    switch (what) {
      // Hard links to the FIFO and the socket made once (a link is the same kind of file).
      case 'fifo': fs.linkSync(path.join(dir, 'fifo'), file); break;
      case 'socket': fs.linkSync(path.join(dir, 'sock'), file); break;
      case 'symlink': fs.symlinkSync(img, file); break;
      case 'dir': fs.mkdirSync(file); break;
      case 'huge': fs.writeFileSync(file, Buffer.alloc((path.basename(file) === 'config.json' ? 4 << 20 : 1 << 20) + 1, 0x20)); break;
      case 'missing': break;
    }
  };

  /** Lays the case out on disk: the bundle's config.json and /kubelet/hostile's entry. */
  function layOut(c: CreateCase): void {
    const specFile = path.join(bundle, 'config.json');
    fs.rmSync(specFile, { recursive: true, force: true });
    if ('text' in c.spec) fs.writeFileSync(specFile, sub(c.spec.text));
    else odd(specFile, c.spec.odd);
    const entry = registry.entryDir('/kubelet/hostile');
    fs.rmSync(entry, { recursive: true, force: true });
    if (c.entry === 'symlink') fs.symlinkSync(registry.entryDir('/kubelet/rw'), entry);
    else if (c.entry === 'file') fs.writeFileSync(entry, okMountInfo());
    else {
      fs.mkdirSync(entry, { mode: 0o700 });
      const file = path.join(entry, 'mountInfo.json');
      if ('text' in c.mountInfo) fs.writeFileSync(file, sub(c.mountInfo.text));
      else odd(file, c.mountInfo.odd);
    }
  }

  it(`answers ${ONLY === undefined ? CASES : `case ${ONLY} of`} hostile Create inputs with a code 9 refusal, an untouched pass-through or a clean accept (seed ${SEED})`, async () => {
    const outcomes = { refused: 0, passed: 0, accepted: 0 };
    const refusedBy = new Map<string, number>();
    const t0 = process.hrtime.bigint();
    const first = ONLY ?? 0;
    const last = ONLY ?? CASES - 1;
    for (let n = first; n <= last; n++) {
      const c = createCase(SEED, n);
      layOut(c);
      const before = tree(dir);
      const specBefore = 'text' in c.spec ? fs.readFileSync(path.join(bundle, 'config.json')) : undefined;
      const where = `case ${n} (replay: KATAVOL_FUZZ_CASE=${n} TTRPC_FUZZ_SEED=${SEED})`;
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise<never>((_r, reject) => { timer = setTimeout(() => reject(new Error(`${where}: Create did not answer within ${HANG_MS} ms`)), HANG_MS); });
      try {
        const r = await Promise.race([icp.create('c1', bundle), hang]);
        if (r === undefined) {
          outcomes.passed++;
          if (specBefore) assert.ok(fs.readFileSync(path.join(bundle, 'config.json')).equals(specBefore), `${where}: passed through, but config.json changed`);
        } else {
          outcomes.accepted++;
          JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
          await r.rollback('fuzz: undo the accepted Create');
        }
      } catch (e) {
        if (!(e instanceof CreateRefused)) assert.fail(`${where}: not a CreateRefused: ${(e as Error)?.stack ?? String(e)}`);
        assert.equal(e.code, 9, where);
        assert.match(e.message, /^katavol: container "c1": /, where);
        assert.doesNotMatch(e.message, LEAKS, `${where}: ${e.message.slice(0, 2000)}`);
        outcomes.refused++;
        const kind = e.message.replace(/"[^"]*"/g, '"…"').replace(/\/[^\s;:()]*/g, '…').replace(/[0-9]+/g, 'N').slice(0, 90);
        refusedBy.set(kind, (refusedBy.get(kind) ?? 0) + 1);
      } finally {
        clearTimeout(timer);
      }
      const after = tree(dir);
      assert.deepEqual(after, before, `${where}: the registry or the bundle changed`);
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const total = last - first + 1;
    if (process.env.KATAVOL_FUZZ_SPECS || ONLY !== undefined) {
      console.log(`      create fuzz: ${total} cases in ${seconds.toFixed(1)} s = ${Math.round(total / seconds)} cases/s; refused ${outcomes.refused}, passed through ${outcomes.passed}, accepted and rolled back ${outcomes.accepted}; crashes: 0; ${refusedBy.size} kinds of refusal`);
    }
    if (process.env.TTRPC_FUZZ_VERBOSE) console.log([...refusedBy].sort((a, b) => b[1] - a[1]));
    if (ONLY === undefined) {
      // The generator reached every outcome (a generator regression would show here).
      assert.ok(outcomes.refused > 0 && outcomes.passed > 0 && outcomes.accepted > 0, JSON.stringify(outcomes));
    }
  });
});
