// The shim proxy under fuzz, in a process of its own (test/shim/proxy-fuzz.test.ts forks it with the
// daemon's Node flags, DAEMON_NODE_FLAGS, so V8 sizes its heap as in the daemon): only the proxy's
// listener, its ProxyConnections, the Create interceptor and the logger live here, so the RSS and heap it
// reports are the proxy's. The hostile downstream and the frame generator stay in the parent. argv: <up socket> <downstream socket> <volume root>.
// IPC: sends {ready: true} once listening; answers {op: 'stats'} with ProxyStats (settledMemory's figures).
import * as net from 'net';
import { Writable } from 'stream';
import { ProxyConnection } from '../../src/shim/proxy';
import { CreateInterceptor } from '../../src/shim/interceptor';
import { createLogger } from '../../src/shim/logger';
import { GcPacer } from '../../src/shim/gc-pacer';
import { type MemoryFigures, settledMemory } from '../support/child-stats';

export interface ProxyStats extends MemoryFigures {
  /** Proxied connections not yet closed on both sides. */
  open: number;
  /** Log lines written (the first 100 are kept, to look for a TypeError). */
  logLines: number;
  logged: string[];
  unhandled: string[];
}

async function main(upSock: string, downSock: string, volumeRoot: string): Promise<void> {
  const logged: string[] = [];
  let logLines = 0;
  const unhandled: string[] = [];
  process.on('unhandledRejection', (e) => unhandled.push(String((e as Error)?.stack ?? e)));
  const log = createLogger({ level: 'error', stream: new Writable({ write: (c, _e, cb) => { logLines++; if (logged.length < 100) logged.push(String(c)); cb(); } }) });
  const interceptor = new CreateInterceptor({ volumeRoot, log, makeBackend: () => { throw new Error('no volume is registered: no backend needed'); } });
  let open = 0;
  const pacer = new GcPacer(); // as the daemon runs it
  const server = net.createServer((s) => {
    open++;
    new ProxyConnection(s, downSock, { interceptor, log, pacer, onClosed: () => void open-- });
  });
  await new Promise<void>((r) => server.listen(upSock, r));
  process.on('message', (m: { op?: string }) => {
    if (m.op !== 'stats') return;
    void settledMemory().then((mem) => process.send?.({ ...mem, open, logLines, logged, unhandled } satisfies ProxyStats));
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ ready: true });
}

if (require.main === module) void main(process.argv[2], process.argv[3], process.argv[4]);
