// Our TTRPC library as a standalone peer process, mirroring the Go peer's modes so benchmarks compare
// like with like (client and server in separate processes):
//   node dist/test/peers/node-peer.js server SOCK
//   node dist/test/peers/node-peer.js bench-client SOCK SIZE SECONDS CONCURRENCY
//   node dist/test/peers/node-peer.js proxy SOCK TARGET_SOCK
// The server prints "ready" once listening and stops on SIGTERM/SIGINT. bench-client prints the same
// JSON as the Go peer: {"calls","seconds","calls_per_sec","p50_us","p99_us","mb_per_sec"}.
// proxy forwards every frame of each connection to its own connection to TARGET_SOCK untouched, the
// way the shim proxy does (Channel, peekServiceMethod on requests, sendRaw with backpressure); it prints
// "ready" once listening and stops on SIGTERM/SIGINT.
import * as fs from 'fs';
import * as net from 'net';
import { Channel, Client, type Frame, FrameType, Server, peekServiceMethod } from '../../src/ttrpc';
import { ECHO_SERVICE, echoHandlers } from './echo-service';
import { forwardFrames } from '../support/ttrpc';

async function serve(sock: string): Promise<void> {
  const server = new Server();
  server.register(ECHO_SERVICE, echoHandlers());
  await server.listen(sock);
  const stop = () => { server.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write('ready\n');
}

/** Frames from one channel to the other, unchanged, peeking at each request's method as the shim proxy does (it routes on it). */
function pipe(from: Channel, to: Channel): void {
  forwardFrames(from, to, (f: Frame) => {
    if (f.type === FrameType.Request) peekServiceMethod(f.data);
  });
}

async function proxy(sock: string, target: string): Promise<void> {
  const srv = net.createServer((upSocket) => {
    const up = new Channel(upSocket);
    const down = new Channel(net.createConnection(target));
    pipe(up, down);
    pipe(down, up);
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(sock, () => resolve());
  });
  const stop = () => {
    srv.close();
    fs.rmSync(sock, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write('ready\n');
}

export interface BenchResult { calls: number; seconds: number; calls_per_sec: number; p50_us: number; p99_us: number; mb_per_sec: number }

/** CONCURRENCY callers of Echo(SIZE bytes) on one connection for SECONDS. */
export async function benchClient(sock: string, size: number, seconds: number, concurrency: number): Promise<BenchResult> {
  const client = await Client.connect(sock);
  const payload = Buffer.alloc(size);
  for (let i = 0; i < size; i++) payload[i] = i & 0xff;
  const lats: number[] = [];
  // performance.now() (a double) rather than hrtime.bigint(): no BigInt allocated per call, so the
  // measuring costs about what Go's time.Now() does.
  const start = performance.now();
  const end = start + seconds * 1e3;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const reply = await client.call(ECHO_SERVICE, 'Echo', payload);
      if (reply.length !== size) throw new Error(`echo returned ${reply.length} bytes, sent ${size}`);
      lats.push((performance.now() - t0) * 1e3);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    client.close();
  }
  const elapsed = (performance.now() - start) / 1e3;
  lats.sort((a, b) => a - b);
  const pct = (p: number) => (lats.length ? lats[Math.floor(p * (lats.length - 1))] : 0);
  return {
    calls: lats.length,
    seconds: elapsed,
    calls_per_sec: lats.length / elapsed,
    p50_us: pct(0.5),
    p99_us: pct(0.99),
    mb_per_sec: (lats.length * size) / elapsed / 1e6,
  };
}

function usage(): never {
  process.stderr.write('usage: node-peer server SOCK | node-peer bench-client SOCK SIZE SECONDS CONCURRENCY | node-peer proxy SOCK TARGET_SOCK\n');
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
  const [mode, sock, ...rest] = argv;
  if (!sock) usage();
  if (mode === 'server') return serve(sock);
  if (mode === 'proxy' && rest.length === 1) return proxy(sock, rest[0]);
  if (mode === 'bench-client' && rest.length === 3) {
    const [size, seconds, conc] = rest.map(Number);
    if (!(size >= 0 && seconds > 0 && conc > 0)) usage();
    process.stdout.write(`${JSON.stringify(await benchClient(sock, size, seconds, conc))}\n`);
    return;
  }
  usage();
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`node-peer: ${err.message}\n`);
    process.exit(1);
  });
}
