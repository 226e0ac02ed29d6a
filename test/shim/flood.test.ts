// Memory pressure on a real serving daemon: started by the shim's own `start` (so with its Node flags,
// DAEMON_NODE_FLAGS) in front of the recording shim, it carries a flood of maximum-size frames (4 MiB
// requests up, 4 MiB answers down, 8 calls in flight) while its pod keeps working: the task it created
// answers State throughout and is killed, deleted and shut down normally afterwards.
// What bounds the daemon's memory: the heap by its cap (a daemon over it would die, and it keeps serving);
// the frames by cut-through (they pass through piece by piece as they arrive, never assembled) with
// backpressure both ways; and the socket chunks Node reads them in, garbage once forwarded, by the
// daemon's collection pacing (gc-pacer.ts: without it V8 lets 64 MiB of them build up). So its peak RSS
// (VmHWM, the kernel's high-water mark) stays under the heap cap itself and stops growing once reached:
// measured 66.7 MiB after 512 MiB each way (105 MiB when frames were assembled, 107 MiB without pacing).
// make test floods 96 MiB each way; `make fuzz` (FLOOD_MIB=, KATAVOL_FLOOD_MIB) 4 GiB each way, and
// prints the figures.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Client, MESSAGE_LENGTH_MAX } from '../../src/ttrpc';
import { pidAlive, socketPath } from '../../src/shim/state';
import { DAEMON_HEAP_FLAG, DAEMON_NODE_FLAGS } from '../../src/shim/oom';
import { RECORDER, RECORDER_DIR_ENV } from '../peers/recorder/record';
import { FLOOD_SERVICE } from '../peers/recorder/main';
import { REPO, sleep } from '../support/containerd';
import { removeDir, scratchDir, socketDir } from '../support/scratch';

const TASK = 'containerd.task.v2.Task';
const FLOOD_MIB = Number(process.env.KATAVOL_FLOOD_MIB ?? 96);
const IN_FLIGHT = 8;
/** The largest payload whose Request (service, method, payload) still fits one 4 MiB frame. */
const MAX_PAYLOAD = MESSAGE_LENGTH_MAX - 64;
const HEAP_CAP_MIB = Number(/--max-old-space-size=(\d+)/.exec(DAEMON_HEAP_FLAG)?.[1]);

const str = (field: number, s: string): Buffer => {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([(field << 3) | 2, b.length]), b]);
};
/** A task request carrying only the container id (State, Start, Kill without signal, Delete, Shutdown). */
const idRequest = (id: string): Buffer => str(1, id);
/** /proc/<pid>/status in KiB: VmRSS now, VmHWM the peak. */
function memory(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}
const mib = (kib: number): string => (kib / 1024).toFixed(1);

describe('memory pressure: a heap-capped serving daemon under a flood of maximum-size frames', function () {
  this.timeout(300000 + FLOOD_MIB * 200);
  let dir: string;
  let sockDir: string;
  const pids: number[] = [];
  beforeEach(() => {
    dir = scratchDir('flood');
    sockDir = socketDir('f');
  });
  afterEach(() => {
    for (const p of pids.splice(0)) if (pidAlive(p)) process.kill(p, 'SIGKILL');
    removeDir(dir);
    removeDir(sockDir);
  });

  it(`carries ${FLOOD_MIB} MiB each way in 4 MiB frames, its RSS under the ${HEAP_CAP_MIB} MiB heap cap, and the pod keeps working`, async () => {
    const bundle = path.join(dir, 'c1');
    fs.mkdirSync(bundle);
    fs.writeFileSync(path.join(bundle, 'config.json'), '{"ociVersion":"1.0.2"}');
    const cfg = path.join(dir, 'katavol.json');
    fs.writeFileSync(cfg, JSON.stringify({ backend: 'runtime-rs', downstream: RECORDER, socketDir: sockDir, warmDaemons: 0 }));
    const env = { ...process.env, KATAVOL_CONFIG: cfg, [RECORDER_DIR_ENV]: path.join(dir, 'rec'), KATAVOL_VOLUME_ROOT: path.join(dir, 'v'), KATAVOL_ORPHAN_TIMEOUT_MS: '600000' };
    // containerd's `start`, the Node path: it spawns the daemon with the heap cap, as the launcher's inline path runs it.
    const r = spawnSync(process.execPath, [path.join(REPO, 'dist', 'src', 'shim', 'bin.js'), '-namespace', 'flood', '-address', '/run/fake.sock', '-id', 'c1', 'start'], { cwd: bundle, env, input: '', encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const st = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8')) as { address: string; daemonPid: number; downstreamPid: number };
    pids.push(st.daemonPid, st.downstreamPid);
    const argv = fs.readFileSync(`/proc/${st.daemonPid}/cmdline`, 'utf8').split('\0');
    for (const flag of DAEMON_NODE_FLAGS) assert.ok(argv.includes(flag), `the daemon runs with ${flag}`);

    const client = await Client.connect(socketPath(st.address));
    try {
      // The pod: a task created and started through the daemon.
      await client.call(TASK, 'Create', Buffer.concat([str(1, 'c1'), str(2, bundle)]));
      await client.call(TASK, 'Start', idRequest('c1'));
      const running = async () => {
        const state = await client.call(TASK, 'State', idRequest('c1'));
        assert.ok(state.includes(Buffer.from('c1')), 'State answers for the task');
      };
      await running();

      const before = memory(st.daemonPid);
      const frames = Math.ceil((FLOOD_MIB * 2 ** 20) / MAX_PAYLOAD);
      const up = Buffer.alloc(MAX_PAYLOAD);
      for (let i = 0; i < up.length; i += 4096) up.writeUInt32BE(i, i); // no two 4 KiB blocks alike
      const filled = Buffer.alloc(MAX_PAYLOAD, 0x5a);
      const fill = Buffer.alloc(4);
      fill.writeUInt32BE(MAX_PAYLOAD);
      let sent = 0;
      let bytesUp = 0;
      let bytesDown = 0;
      let peakRss = before.rss;
      let quarter: { rss: number; peak: number } | undefined;
      const t0 = process.hrtime.bigint();
      // Echo carries a maximum-size frame both ways; every third call is a Fill (small up, maximum down).
      const worker = async () => {
        while (sent < frames) {
          const n = sent++;
          if (n === Math.floor(frames / 4)) quarter = memory(st.daemonPid);
          const fillCall = n % 3 === 2;
          const answer = await client.call(FLOOD_SERVICE, fillCall ? 'Fill' : 'Echo', fillCall ? fill : up);
          // Byte for byte: reused buffers must never carry another frame's bytes.
          assert.ok(fillCall ? answer.equals(filled) : answer.equals(up), `call ${n}: the answer's bytes differ`);
          bytesUp += fillCall ? fill.length : up.length;
          bytesDown += answer.length;
          if (n % 16 === 0) {
            peakRss = Math.max(peakRss, memory(st.daemonPid).rss);
            await running();
          }
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const after = memory(st.daemonPid);
      assert.ok(quarter);
      const figures = `${frames} calls, ${(bytesUp / 2 ** 20).toFixed(0)} MiB up and ${(bytesDown / 2 ** 20).toFixed(0)} MiB down in ${seconds.toFixed(1)} s (${(bytesUp / 2 ** 20 / seconds).toFixed(0)} / ${(bytesDown / 2 ** 20 / seconds).toFixed(0)} MiB/s); daemon RSS ${mib(before.rss)} -> ${mib(quarter.rss)} (a quarter in) -> ${mib(after.rss)} MiB, sampled max ${mib(peakRss)}, peak (VmHWM) ${mib(quarter.peak)} (a quarter in) -> ${mib(after.peak)} MiB; heap cap ${HEAP_CAP_MIB} MiB`;
      if (process.env.KATAVOL_FLOOD_MIB) console.log(`      flood: ${figures}`);
      assert.ok(after.peak < HEAP_CAP_MIB * 1024, `the daemon's peak RSS passed its heap cap: ${figures}`);
      // Bounded, not growing with the volume: the last three quarters of a large flood raise the peak by noise only.
      if (frames >= 100) assert.ok(after.peak - quarter.peak < 32 * 1024, `the daemon's peak RSS kept growing: ${figures}`);
      assert.ok(pidAlive(st.daemonPid), 'the daemon is alive');

      // The pod still works: its task answers, stops, is deleted, and the shim shuts down.
      await running();
      await client.call(TASK, 'Kill', Buffer.concat([idRequest('c1'), Buffer.from([0x18, 9])]));
      await client.call(TASK, 'Delete', idRequest('c1'));
      await client.call(TASK, 'Shutdown', idRequest('c1')).catch(() => undefined); // the downstream exits as it answers
    } finally {
      client.close();
    }
    for (let i = 0; i < 100 && pidAlive(st.daemonPid); i++) await sleep(100);
    assert.ok(!pidAlive(st.daemonPid), 'the daemon exited after Shutdown');
  });
});
