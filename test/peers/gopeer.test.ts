// goPeerPath(): one offline build per source version, safe when several processes build at once.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { goBuildCache, goPeerPath, goPeerSource } from '../support/gopeer';
import { scratchDir } from '../support/scratch';

const run = promisify(execFile);

describe('Go peer build (test/support/gopeer)', function () {
  let scratch: string;

  before(function () {
    scratch = scratchDir('gopeer-test');
  });

  after(function () {
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('two processes building at once into an empty cache all get the same working binary', async function () {
    // os.tmpdir() follows TMPDIR, so each child sees the fresh, empty cache root.
    const script = `process.stdout.write(require(${JSON.stringify(path.join(__dirname, '..', 'support', 'gopeer.js'))}).goPeerPath())`;
    const env = { ...process.env, TMPDIR: scratch };
    const paths = await Promise.all([1, 2].map(async () => (await run(process.execPath, ['-e', script], { env })).stdout));
    assert.equal(new Set(paths).size, 1);
    const bin = paths[0];
    assert.match(bin, new RegExp(`^${scratch}/katavol-gopeer-[0-9a-f]{16}/ttrpcpeer$`));
    // usage text on exit 2 proves it is the peer and it runs
    const err = await run(bin, []).then(() => undefined, (e: { code: number; stderr: string }) => e);
    assert.equal(err?.code, 2);
    assert.match(err.stderr, /ttrpcpeer server SOCK/);
    // nothing half-made left: no temp binaries, no private GOPATHs
    const left = fs.readdirSync(path.dirname(bin)).filter((n) => n !== 'ttrpcpeer' && n !== 'gocache');
    assert.deepEqual(left, []);
  });

  it('keeps Go\'s build cache outside the per-source directory and outside TMPDIR, so a rebuild reuses it', function () {
    // The build in the test above ran with an empty TMPDIR; its compiled packages stay in the cache.
    const cache = goBuildCache();
    assert.ok(!cache.startsWith(scratch) && !cache.startsWith(path.join(os.tmpdir(), 'katavol-gopeer-')), cache);
    assert.ok(fs.readdirSync(cache).length > 0, `${cache} is empty after a build`);
  });

  it('keys the cache directory by the hash of main.go, so an edited peer is rebuilt', function () {
    const hash = crypto.createHash('sha256').update(fs.readFileSync(goPeerSource())).digest('hex').slice(0, 16);
    assert.equal(goPeerPath(), path.join(os.tmpdir(), `katavol-gopeer-${hash}`, 'ttrpcpeer'));
  });
});
