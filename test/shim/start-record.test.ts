// Start records under <socketDir>/.starts (src/shim/reaper.ts): the directory is made by the first start
// in flight and removed by the last one to finish, so concurrent starts create and remove it under each
// other. Found by the bench: 8 concurrent `ctr run` failed one start with "ENOENT ... mkdir .starts".
// Several processes open and remove records in one socketDir at once; every open must succeed. And a
// start killed before its downstream start answered leaves a record that goes as soon as nothing can fill it.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { STARTS_DIR, sweepDeadDaemons } from '../../src/shim/reaper';
import { removeDir, socketDir } from '../support/scratch';

describe('shim: start records under concurrent starts', function () {
  this.timeout(120000);
  let sockDir: string;
  afterEach(() => removeDir(sockDir));

  it('a dead start\'s record with no answer stays while its downstream start can still write it, and goes at the next sweep once nothing can', async () => {
    sockDir = socketDir();
    const reaper = path.resolve(__dirname, '../../src/shim/reaper.js');
    // A start that opens its record, hands it to a "downstream start" that writes nothing (yet), and dies.
    const script = `
      const { spawn } = require('child_process');
      const { StartRecord } = require(${JSON.stringify(reaper)});
      const rec = StartRecord.open(process.argv[1], { id: 'c1', bundle: '/nonexistent', downstream: 'x' });
      const ds = spawn('sleep', ['600'], { stdio: ['ignore', rec.fd, 'ignore'], detached: true });
      process.stdout.write(String(ds.pid), () => process.kill(process.pid, 'SIGKILL'));`;
    const out = await new Promise<string>((resolve) => {
      const p = spawn(process.execPath, ['-e', script, sockDir], { stdio: ['ignore', 'pipe', 'inherit'] });
      let o = '';
      p.stdout.on('data', (b: Buffer) => { o += b.toString(); });
      p.on('close', () => resolve(o));
    });
    const downstream = Number(out);
    assert.ok(downstream > 0, `the downstream start's pid: ${out}`);
    const records = () => { try { return fs.readdirSync(path.join(sockDir, STARTS_DIR)); } catch { return []; } };
    try {
      assert.equal(records().length, 1, 'the dead start left its record');
      assert.deepEqual(await sweepDeadDaemons(sockDir), []);
      assert.equal(records().length, 1, 'kept: its downstream start may still write the answer');
    } finally {
      process.kill(downstream, 'SIGKILL');
    }
    for (let i = 0; i < 100 && fs.existsSync(`/proc/${downstream}/fd/1`); i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await sweepDeadDaemons(sockDir), []);
    assert.deepEqual(records(), [], 'gone once no process can write it (no TTL to wait out)');
  });

  it('opens every record while other starts make and remove .starts concurrently', async () => {
    sockDir = socketDir();
    const reaper = path.resolve(__dirname, '../../src/shim/reaper.js');
    const script = `
      const { StartRecord } = require(${JSON.stringify(reaper)});
      let failed = 0, first = '';
      for (let i = 0; i < 400; i++) {
        try {
          StartRecord.open(process.argv[1], { id: 'c' + i, bundle: '/nonexistent', downstream: 'x' }).remove();
        } catch (e) { failed++; first = first || String(e); }
      }
      process.stdout.write(JSON.stringify({ failed, first }));`;
    const results = await Promise.all(Array.from({ length: 6 }, () => new Promise<{ failed: number; first: string }>((resolve, reject) => {
      const p = spawn(process.execPath, ['-e', script, sockDir], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
      p.on('error', reject);
      p.on('close', () => resolve(JSON.parse(out) as { failed: number; first: string }));
    })));
    const failures = results.filter((r) => r.failed > 0);
    assert.deepEqual(failures, [], `start records failed to open: ${failures.map((r) => `${r.failed}x ${r.first}`).join('; ')}`);
    assert.deepEqual(fs.readdirSync(sockDir).filter((n) => n === STARTS_DIR), [], 'the last record removed .starts');
  });
});
