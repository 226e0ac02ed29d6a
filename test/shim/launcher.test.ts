// bin/containerd-shim-katavol-v2 forwards the common `delete` to the downstream without starting Node,
// and hands every other case (held volumes, a crashed daemon, odd state) to the built code.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import { SHIM, tmpDir } from '../support/containerd';

describe('shim launcher: delete fast path', () => {
  let dir: string;
  let bundle: string;
  let fakeBin: string;
  let marker: string;
  const daemons: ChildProcess[] = [];

  beforeEach(() => {
    dir = tmpDir('katavol-launcher-');
    bundle = path.join(dir, 'bundle');
    fs.mkdirSync(bundle);
    // A downstream that answers `delete` with recognisable bytes and exit status.
    fs.writeFileSync(path.join(dir, 'downstream'), '#!/bin/sh\nprintf "DS %s|" "$@"; pwd; exit 3\n', { mode: 0o755 });
    // A `node` first on PATH that only leaves a mark: it shows whether the launcher started Node.
    fakeBin = path.join(dir, 'fakebin');
    fs.mkdirSync(fakeBin);
    marker = path.join(dir, 'node-ran');
    fs.writeFileSync(path.join(fakeBin, 'node'), `#!/bin/sh\necho "$@" > ${marker}\nexit 0\n`, { mode: 0o755 });
  });
  afterEach(() => {
    for (const d of daemons.splice(0)) d.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A live process whose argv names the daemon entry, like our daemon's does. */
  function fakeDaemon(): number {
    // One process (a shell would leave its `sleep` behind when killed), with the entry path in its argv.
    const d = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', path.join(dir, 'dist/src/shim/bin.js')], { stdio: 'ignore' });
    daemons.push(d);
    return d.pid!;
  }

  function writeState(over: Record<string, unknown>): void {
    const st = {
      address: `unix://${dir}/ours.sock`, downstreamAddress: `unix://${dir}/theirs.sock`,
      downstream: path.join(dir, 'downstream'), backend: 'runc', ...over,
    };
    fs.writeFileSync(path.join(bundle, 'katavol.json'), JSON.stringify(st) + '\n');
  }

  function del() {
    return spawnSync(SHIM, ['-namespace', 'ns', '-address', '/c.sock', '-publish-binary', '/x', '-id', 'c1', '-bundle', bundle, 'delete'], {
      cwd: bundle, encoding: 'utf8', env: { ...process.env, PATH: `${fakeBin}:${process.env.PATH}` },
    });
  }

  const forwarded = (r: ReturnType<typeof del>) => {
    assert.equal(r.status, 3, r.stderr);
    assert.equal(r.stdout, `DS -namespace|DS ns|DS -address|DS /c.sock|DS -publish-binary|DS /x|DS -id|DS c1|DS -bundle|DS ${bundle}|DS delete|${bundle}\n`);
    assert.equal(fs.existsSync(marker), false, 'Node was not started');
  };
  const handedToNode = (r: ReturnType<typeof del>) => {
    assert.equal(r.status, 0);
    assert.match(fs.readFileSync(marker, 'utf8'), /dist\/src\/shim\/bin\.js -namespace ns .* delete/);
  };

  it('forwards to the downstream delete (same argv, cwd, stdout, status) while our daemon lives', () => {
    writeState({ daemonPid: fakeDaemon() });
    forwarded(del());
  });
  it('forwards after a clean daemon exit (both sockets removed)', () => {
    writeState({ daemonPid: 999999 });
    forwarded(del());
  });
  it('runs Node when the daemon died and left the downstream behind (orphan clean-up)', () => {
    writeState({ daemonPid: 999999 });
    fs.writeFileSync(path.join(dir, 'theirs.sock'), '');
    handedToNode(del());
  });
  it('runs Node when a pid was reused by a process that is not our daemon', () => {
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      writeState({ daemonPid: other.pid });
      fs.writeFileSync(path.join(dir, 'ours.sock'), '');
      handedToNode(del());
    } finally {
      other.kill('SIGKILL');
    }
  });
  it('runs Node when volumes are still held for the bundle', () => {
    writeState({ daemonPid: fakeDaemon() });
    fs.writeFileSync(path.join(bundle, 'katavol-held.json'), '{}');
    handedToNode(del());
  });
  it('runs Node when a delete killed while releasing left its claim of the held record', () => {
    writeState({ daemonPid: fakeDaemon() });
    fs.writeFileSync(path.join(bundle, 'katavol-held.json.releasing.999999'), '{}');
    handedToNode(del());
  });
  it('runs Node for state it does not fully understand (no state, escapes, relative downstream)', () => {
    handedToNode(del());
    fs.rmSync(marker);
    writeState({ daemonPid: fakeDaemon(), downstream: 'relative/shim' });
    handedToNode(del());
    fs.rmSync(marker);
    writeState({ daemonPid: fakeDaemon(), downstream: path.join(dir, 'a"b') });
    handedToNode(del());
  });
  it('start: a Node process that ends without an address is a clear failure, not an empty answer', () => {
    // The fake node prints nothing, like a process killed before it could answer.
    const r = spawnSync(SHIM, ['-namespace', 'ns', '-address', '/c.sock', '-id', 'c1', 'start'], {
      cwd: bundle, encoding: 'utf8', input: '', env: { ...process.env, PATH: `${fakeBin}:${process.env.PATH}` },
    });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'containerd-shim-katavol-v2: start ended without printing an address');
    assert.match(fs.readFileSync(marker, 'utf8'), /dist\/src\/shim\/bin\.js -namespace ns .* start/);
  });
  it('runs Node for every other action', () => {
    const r = spawnSync(SHIM, ['-v'], { encoding: 'utf8', env: { ...process.env, PATH: `${fakeBin}:${process.env.PATH}` } });
    assert.equal(r.status, 0);
    assert.match(fs.readFileSync(marker, 'utf8'), /dist\/src\/shim\/bin\.js -v/);
  });
});
