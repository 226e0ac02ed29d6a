// Structured winston logger writing to the bundle's `log` fifo, which containerd reads and copies into
// its own log: in logrus's text format (time=… level=… msg=… key=value), as every other line of
// containerd's log is, or as JSON lines by config. The fifo is opened non-blocking and re-opened after containerd restarts;
// a log line that cannot be written is dropped rather than ever blocking or crashing the shim.
import * as fs from 'fs';
import { Writable } from 'stream';
import type * as Winston from 'winston';
import type { BackendLogger } from '../backends/backend';

class FifoWriter extends Writable {
  private fd: number | undefined;
  constructor(private readonly file: string) {
    super();
  }
  private open(): number | undefined {
    if (this.fd === undefined) {
      try {
        this.fd = fs.openSync(this.file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK | fs.constants.O_APPEND);
      } catch {
        return undefined; // no reader (containerd restarting) or no fifo: drop
      }
    }
    return this.fd;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const fd = this.open();
    if (fd === undefined) return cb();
    // Synchronous on a non-blocking fd: never blocks, and a line is in the pipe before we answer the
    // call that logged it (containerd stops reading the fifo right after its last Shutdown).
    try {
      fs.writeSync(fd, chunk);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') {
        try { fs.closeSync(fd); } catch { /* ignore */ }
        this.fd = undefined;
      }
    }
    cb();
  }
  override _final(cb: () => void): void {
    if (this.fd !== undefined) try { fs.closeSync(this.fd); } catch { /* ignore */ }
    cb();
  }
}

export type Logger = BackendLogger & {
  child(meta: Record<string, unknown>): Logger;
  /** Loads winston now and writes what was buffered. */
  flush(): void;
  /** Whether winston is loaded (flush() is then a no-op). */
  readonly loaded: boolean;
  close(): Promise<void>;
};

type Level = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

/** logrus quotes a value unless every character is one of these (TextFormatter.needsQuoting). */
const BARE = /^[A-Za-z0-9\-._/@^+]+$/;
function logrusValue(v: unknown): string {
  const text = typeof v === 'string' ? v : v instanceof Error ? v.message : JSON.stringify(v) ?? String(v);
  return BARE.test(text) ? text : JSON.stringify(text);
}

/** ISO time with nanoseconds, as containerd's RFC3339NanoFixed ("2006-01-02T15:04:05.000000000Z07:00"). */
const nanoTime = (iso: string): string => iso.replace(/\.(\d{3})Z$/, '.$1000000Z');

/** One logrus text line: time, level, msg first, then the other fields sorted by key. */
export function formatLogrus(info: Record<string, unknown>): string {
  const { timestamp, level, message, ...rest } = info;
  const lvl = level === 'warn' ? 'warning' : String(level);
  const fields = Object.keys(rest).sort().map((k) => `${k}=${logrusValue(rest[k])}`);
  return [`time=${logrusValue(nanoTime(String(timestamp)))}`, `level=${lvl}`, `msg=${logrusValue(message)}`, ...fields].join(' ');
}
type Entry = [Level, string, Record<string, unknown> | undefined, Record<string, unknown>];
const MAX_BUFFERED = 1000;

/**
 * Loading winston costs ~50 ms, and the daemon is started right when containerd sends Create: so the
 * logger buffers entries and loads winston once the daemon has been idle for `loadAfterIdleMs`, or when
 * flush() is called (the proxy does before forwarding a task Delete or Shutdown, while containerd still
 * reads the fifo), keeping it off the container's start path. Entries keep their original timestamps.
 */
export function createLogger(opts: { file?: string; level: string; format?: LogFormat; meta?: Record<string, unknown>; stream?: Writable; loadAfterIdleMs?: number }): Logger {
  const stream = opts.stream ?? new FifoWriter(opts.file ?? 'log');
  let w: Winston.Logger | undefined;
  let buffered: Entry[] = [];
  let timer: NodeJS.Timeout | undefined;
  const load = (): Winston.Logger => {
    if (w) return w;
    const winston = require('winston') as typeof Winston;
    w = winston.createLogger({
      level: opts.level,
      defaultMeta: { component: 'katavol-shim', pid: process.pid, ...opts.meta },
      // Buffered entries carry the time they were logged; others get it now.
      format: winston.format.combine(
        winston.format((info) => { info.timestamp ??= new Date().toISOString(); return info; })(),
        opts.format === 'json' ? winston.format.json() : winston.format.printf((info) => formatLogrus(info)),
      ),
      transports: [new winston.transports.Stream({ stream })],
      exitOnError: false,
    });
    w.on('error', () => undefined);
    for (const [lvl, msg, meta, ctx] of buffered) w.log(lvl, msg, { ...ctx, ...meta });
    buffered = [];
    return w;
  };
  const idle = opts.loadAfterIdleMs ?? 0;
  const poke = (): void => {
    if (w || idle <= 0) return;
    if (timer) timer.refresh();
    else timer = setTimeout(load, idle);
  };
  if (idle <= 0) load();
  else poke();
  const make = (ctx: Record<string, unknown>): Logger => {
    const at = (lvl: Level) => (msg: string, meta?: Record<string, unknown>) => {
      if (w) return void w.log(lvl, msg, { ...ctx, ...meta });
      if (buffered.length < MAX_BUFFERED) buffered.push([lvl, msg, meta, { ...ctx, timestamp: new Date().toISOString() }]);
      poke();
    };
    return {
      debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'),
      child: (meta) => make({ ...ctx, ...meta }),
      flush: () => {
        if (timer) clearTimeout(timer);
        load();
      },
      get loaded() {
        return w !== undefined;
      },
      close: () => new Promise<void>((resolve) => {
        if (timer) clearTimeout(timer);
        load();
        const t = setTimeout(resolve, 500);
        stream.end(() => { clearTimeout(t); resolve(); });
      }),
    };
  };
  return make({});
}
