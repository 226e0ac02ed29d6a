// Our TTRPC library as a standalone peer process, mirroring the Go peer's modes so benchmarks compare
// like with like (client and server in separate processes):
//   node dist/test/peers/node-peer.js server SOCK
//   node dist/test/peers/node-peer.js bench-client SOCK SIZE SECONDS CONCURRENCY
// The server prints "ready" once listening and stops on SIGTERM/SIGINT. bench-client prints the same
// JSON as the Go peer: {"calls","seconds","calls_per_sec","p50_us","p99_us","mb_per_sec"}.
import { Client, Server } from '../../src/ttrpc';
import { ECHO_SERVICE, echoHandlers } from './echo-service';

async function serve(sock: string): Promise<void> {
  const server = new Server();
  server.register(ECHO_SERVICE, echoHandlers());
  await server.listen(sock);
  const stop = () => { server.close(); process.exit(0); };
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
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  const worker = async () => {
    while (process.hrtime.bigint() < end) {
      const t0 = process.hrtime.bigint();
      const reply = await client.call(ECHO_SERVICE, 'Echo', payload);
      if (reply.length !== size) throw new Error(`echo returned ${reply.length} bytes, sent ${size}`);
      lats.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    client.close();
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
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
  process.stderr.write('usage: node-peer server SOCK | node-peer bench-client SOCK SIZE SECONDS CONCURRENCY\n');
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
  const [mode, sock, ...rest] = argv;
  if (!sock) usage();
  if (mode === 'server') return serve(sock);
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
