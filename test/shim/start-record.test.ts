// Start records under <socketDir>/.starts (src/shim/reaper.ts): the directory is made by the first start
// in flight and removed by the last one to finish, so concurrent starts create and remove it under each
// other. Found by the bench: 8 concurrent `ctr run` failed one start with "ENOENT ... mkdir .starts".
// Several processes open and remove records in one socketDir at once; every open must succeed.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { STARTS_DIR } from '../../src/shim/reaper';
import { removeDir, socketDir } from '../support/scratch';

describe('shim: start records under concurrent starts', function () {
  this.timeout(120000);
  let sockDir: string;
  afterEach(() => removeDir(sockDir));

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
