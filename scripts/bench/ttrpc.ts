// TTRPC section: unary Echo throughput and latency of our library against Debian's Go ttrpc 1.1.1, in
// all four client->server pairings, each client and server in its own process on a unix socket.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { goPeerPath } from '../../test/support/gopeer';
import { runPeer, startPeerServer, type PeerServer } from '../../test/peers/spawn';
import type { BenchResult } from '../../test/peers/node-peer';
import { cellSeconds, fmt, printTable, type Section } from './section';

const CONCURRENCY = 16; // calls in flight on the one connection, like containerd's concurrent calls
const CELLS: Array<{ size: number; label: string }> = [
  { size: 64, label: '64 B' },
  { size: 64 << 10, label: '64 KiB' },
  { size: 1 << 20, label: '1 MiB' },
];
type Impl = 'ours' | 'go';
const PAIRS: Array<{ client: Impl; server: Impl }> = [
  { client: 'ours', server: 'ours' },
  { client: 'go', server: 'go' },
  { client: 'ours', server: 'go' },
  { client: 'go', server: 'ours' },
];

const NODE_PEER = path.join(__dirname, '..', '..', 'test', 'peers', 'node-peer.js');

function command(impl: Impl, args: string[]): [string, string[]] {
  return impl === 'go' ? [goPeerPath(), args] : [process.execPath, [NODE_PEER, ...args]];
}

async function run(): Promise<void> {
  const seconds = cellSeconds();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'katavol-bench-ttrpc-'));
  const servers: PeerServer[] = [];
  try {
    const socks: Record<Impl, string> = { ours: path.join(dir, 'ours.sock'), go: path.join(dir, 'go.sock') };
    for (const impl of ['ours', 'go'] as Impl[]) {
      const [cmd, args] = command(impl, [impl === 'go' ? 'bench-server' : 'server', socks[impl]]);
      servers.push(await startPeerServer(cmd, args, `${impl} TTRPC server`));
    }
    process.stdout.write(`unary Echo, ${CONCURRENCY} calls in flight on one connection, ${seconds} s per cell; MB/s = payload bytes one way\n`);
    const rows: Array<Array<string | number>> = [];
    for (const cell of CELLS) {
      const results = new Map<string, BenchResult>();
      for (const pair of PAIRS) {
        const [cmd, args] = command(pair.client, ['bench-client', socks[pair.server], String(cell.size), String(seconds), String(CONCURRENCY)]);
        const res = await runPeer(cmd, args, (seconds + 60) * 1000);
        if (res.code !== 0) throw new Error(`${pair.client} client -> ${pair.server} server failed (exit ${res.code}): ${res.stderr.trim()}`);
        results.set(`${pair.client} -> ${pair.server}`, JSON.parse(res.stdout) as BenchResult);
      }
      const goBaseline = results.get('go -> go')!.calls_per_sec;
      for (const [name, r] of results) {
        rows.push([cell.label, name, fmt(r.calls_per_sec), fmt(r.p50_us), fmt(r.p99_us), fmt(r.mb_per_sec, 1),
          `${(r.calls_per_sec / goBaseline).toFixed(2)}x`]);
      }
    }
    printTable(['payload', 'client -> server', 'calls/s', 'p50 us', 'p99 us', 'MB/s', 'vs go->go'], rows);
    process.stdout.write('vs go->go = calls/s of the row / calls/s of go -> go for the same payload (ours -> ours is the headline ratio)\n');
  } finally {
    for (const s of servers) await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const section: Section = { name: 'ttrpc', title: 'TTRPC unary calls, ours vs Go ttrpc 1.1.1', run };
