// TTRPC section: unary Echo throughput and latency of our library against Debian's Go ttrpc 1.1.1, in
// all four client->server pairings plus our frame forwarder between Go peers, each party in its own
// process on a unix socket.
//
// Fairness: on a small machine a client can be the bottleneck (Go's client uses every core, ours one),
// so calls/s of "go -> ours" partly measures Go's client. The "srv CPU" column is the server process's
// own CPU time (user+sys from /proc) per call, which compares the servers whatever the client does.
// Other work on the machine makes single runs noisy: every cell is run BENCH_REPS times, the pairs of a
// cell interleaved round by round, and each figure is the median over the rounds.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { goPeerPath } from '../../test/support/gopeer';
import { runPeer, startPeerServer, type PeerServer } from '../../test/peers/spawn';
import type { BenchResult } from '../../test/peers/node-peer';
import { cellSeconds, fmt, median, printTable, type Section } from './section';

const CONCURRENCY = 16; // calls in flight on the one connection, like containerd's concurrent calls
const CELLS: Array<{ size: number; label: string }> = [
  { size: 64, label: '64 B' },
  { size: 64 << 10, label: '64 KiB' },
  { size: 1 << 20, label: '1 MiB' },
];
type Impl = 'ours' | 'go';
// `via`: the client talks to our forwarder, which forwards every frame to the server (the shim's path).
const ROWS: Array<{ client: Impl; server: Impl; via?: 'proxy' }> = [
  { client: 'ours', server: 'ours' },
  { client: 'go', server: 'go' },
  { client: 'ours', server: 'go' },
  { client: 'go', server: 'ours' },
  { client: 'go', server: 'go', via: 'proxy' },
];

const NODE_PEER = path.join(__dirname, '..', '..', 'test', 'peers', 'node-peer.js');

function command(impl: Impl, args: string[]): [string, string[]] {
  return impl === 'go' ? [goPeerPath(), args] : [process.execPath, [NODE_PEER, ...args]];
}

function repetitions(): number {
  const v = Number(process.env.BENCH_REPS ?? '3');
  return Number.isInteger(v) && v > 0 ? v : 3;
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) a process has used so far, from /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime, stime = fields 14, 15
}

function rowName(r: (typeof ROWS)[number]): string {
  return r.via ? `${r.client} -> ours proxy -> ${r.server}` : `${r.client} -> ${r.server}`;
}

async function run(): Promise<void> {
  const seconds = cellSeconds();
  const reps = repetitions();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'katavol-bench-ttrpc-'));
  const servers: PeerServer[] = [];
  try {
    const socks: Record<Impl | 'proxy', string> = {
      ours: path.join(dir, 'ours.sock'),
      go: path.join(dir, 'go.sock'),
      proxy: path.join(dir, 'proxy.sock'),
    };
    const pids: Record<Impl | 'proxy', number> = { ours: 0, go: 0, proxy: 0 };
    for (const impl of ['ours', 'go'] as Impl[]) {
      const [cmd, args] = command(impl, [impl === 'go' ? 'bench-server' : 'server', socks[impl]]);
      const s = await startPeerServer(cmd, args, `${impl} TTRPC server`);
      servers.push(s);
      pids[impl] = s.pid;
    }
    const [pcmd, pargs] = command('ours', ['proxy', socks.proxy, socks.go]);
    const proxy = await startPeerServer(pcmd, pargs, 'our TTRPC forwarder');
    servers.push(proxy);
    pids.proxy = proxy.pid;
    process.stdout.write(
      `unary Echo, ${CONCURRENCY} calls in flight on one connection, ${seconds} s per run, median of ${reps} interleaved runs; ` +
        'MB/s = payload bytes one way\n',
    );
    const rows: Array<Array<string | number>> = [];
    for (const cell of CELLS) {
      const runs = ROWS.map(() => [] as Array<BenchResult & { cpu_us: number }>);
      for (let rep = 0; rep < reps; rep++) {
        for (const [i, row] of ROWS.entries()) {
          const target = row.via ?? row.server;
          const [cmd, args] = command(row.client, ['bench-client', socks[target], String(cell.size), String(seconds), String(CONCURRENCY)]);
          const cpu0 = cpuSeconds(pids[target]);
          const res = await runPeer(cmd, args, (seconds + 60) * 1000);
          const cpu = cpuSeconds(pids[target]) - cpu0;
          if (res.code !== 0) throw new Error(`${rowName(row)} failed (exit ${res.code}): ${res.stderr.trim()}`);
          const r = JSON.parse(res.stdout) as BenchResult;
          runs[i].push({ ...r, cpu_us: r.calls ? (cpu * 1e6) / r.calls : 0 });
        }
      }
      const med = (i: number, k: keyof BenchResult | 'cpu_us') => median(runs[i].map((r) => r[k]));
      const goBaseline = med(ROWS.findIndex((r) => r.client === 'go' && r.server === 'go' && !r.via), 'calls_per_sec');
      for (const [i, row] of ROWS.entries()) {
        const cps = med(i, 'calls_per_sec');
        rows.push([cell.label, rowName(row), fmt(cps), fmt(med(i, 'p50_us')), fmt(med(i, 'p99_us')), fmt(med(i, 'mb_per_sec'), 1),
          fmt(med(i, 'cpu_us'), 1), `${(cps / goBaseline).toFixed(2)}x`]);
      }
    }
    printTable(['payload', 'client -> server', 'calls/s', 'p50 us', 'p99 us', 'MB/s', 'srv CPU us/call', 'vs go->go'], rows);
    process.stdout.write(
      'vs go->go = calls/s of the row / calls/s of go -> go for the same payload (ours -> ours is the headline ratio)\n' +
        'srv CPU us/call = CPU time of the server process (of the forwarder, on the proxy row) per call; lower is better\n',
    );
  } finally {
    for (const s of servers) await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const section: Section = { name: 'ttrpc', title: 'TTRPC unary calls, ours vs Go ttrpc 1.1.1', run };
