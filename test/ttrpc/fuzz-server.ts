// The server under fuzz, in a process of its own (test/ttrpc/fuzz.test.ts forks it with --expose-gc), so
// the RSS and heap it reports are the server's alone: the harness's generator, peers and answer checks
// live in the parent. It counts what it reports through onError by kind and keeps no Error object.
// IPC: sends {ready: true} once listening; answers {op: 'stats'} with Stats (settledMemory's figures).
import { Server } from '../../src/ttrpc';
import { SVC } from '../support/fuzz-gen';
import { type MemoryFigures, settledMemory } from '../support/child-stats';

export interface Stats extends MemoryFigures {
  connections: number;
  errorCount: number;
  errorKinds: [string, number][];
  unhandled: string[];
}

export function fuzzServer(onError: (e: Error) => void): Server {
  const server = new Server({ onError });
  server.register(SVC, {
    Echo: (_c, p) => p,
    Throw: (_c, p) => {
      throw new Error(`thrown for ${p.length} bytes`);
    },
    Slow: (_c, p) => new Promise((r) => setImmediate(() => r(p))),
    Undefined: () => undefined as unknown as Uint8Array,
    Hang: (ctx) => new Promise((_r, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))),
  });
  server.registerStream(
    SVC,
    'Count',
    async (_c, s) => {
      const first = await s.recv();
      for (let i = 0; i < (first?.[0] ?? 0) % 4; i++) s.send(Buffer.from([i]));
    },
    { clientStream: false, serverStream: true },
  );
  server.registerStream(
    SVC,
    'Sum',
    async (ctx, s) => {
      let n = 0;
      // Bounded: a fuzzed client may never close its side, so stop at the deadline or after a few messages.
      for await (const m of s) if ((n += m.length) > 64 || ctx.signal.aborted) break;
      return Buffer.from([n & 0xff]);
    },
    { clientStream: true, serverStream: false },
  );
  return server;
}

async function main(sock: string): Promise<void> {
  const errorKinds = new Map<string, number>();
  let errorCount = 0;
  const unhandled: string[] = [];
  process.on('unhandledRejection', (e) => unhandled.push(String((e as Error)?.stack ?? e)));
  const server = fuzzServer((e) => {
    errorCount++;
    const kind = `${e.name}: ${e.message.replace(/[0-9]+/g, 'N').slice(0, 100)}`;
    if (errorKinds.has(kind) || errorKinds.size < 50) errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
  });
  await server.listen(sock);
  process.on('message', (m: { op?: string }) => {
    if (m.op !== 'stats') return;
    void settledMemory().then((mem) => process.send?.({ ...mem, connections: server.connectionCount, errorCount, errorKinds: [...errorKinds], unhandled } satisfies Stats));
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ ready: true });
}

if (require.main === module) void main(process.argv[2]);
