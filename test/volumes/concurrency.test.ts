import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { type ChildProcess, spawn } from 'child_process';
import { LOCK_DIR_NAME, SANDBOX_MODES_DIR_NAME, Registry } from '../../src/volumes/registry';
import { encodeVolumePath } from '../../src/volumes/encoding';
import { imageFile } from '../support/disks';
import { scratchDir } from '../support/scratch';

const WORKER = path.join(__dirname, 'concurrency-worker.js');

function run(args: string[], children: ChildProcess[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(`worker exited ${code}`))));
  });
}

describe('volumes/registry under concurrent processes', () => {
  let scratch: string;
  const children: ChildProcess[] = [];
  beforeEach(() => (scratch = scratchDir('conc')));
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('add/remove/record/release of one volume from 4 processes never leaves a torn or half-removed entry', async () => {
    const root = path.join(scratch, 'root');
    const vol = '/kubelet/pods/p/volumes/shared';
    const dev = imageFile(scratch);
    const stop = path.join(scratch, 'stop');
    const checker = run(['check', root, vol, dev, stop], children);
    const writers = [1, 2, 3, 4].map((i) => run(['write', root, vol, dev, '150', String(i)], children));
    const writerProblems = await Promise.all(writers);
    fs.writeFileSync(stop, '');
    const readerProblems = await checker;
    assert.deepStrictEqual(writerProblems, [[], [], [], []]);
    assert.deepStrictEqual(readerProblems, []);

    // Only the entry (or nothing), the empty lock directory and katavol's part of the sandbox records
    // remain: no temp or trash names.
    const left = fs.readdirSync(root).sort();
    assert.ok(left.every((n) => n === LOCK_DIR_NAME || n === SANDBOX_MODES_DIR_NAME || n === encodeVolumePath(vol)), `leftovers: ${left.join(',')}`);
    assert.deepStrictEqual(fs.readdirSync(path.join(root, LOCK_DIR_NAME)), []);
    const reg = new Registry(root);
    if (reg.isRegistered(vol)) {
      const r = reg.read(vol);
      assert.ok(r.canonical);
      assert.match(r.info.metadata.writer, /^[1-4]$/);
    }
  });
});
