// Structured (JSON lines) winston logger writing to the bundle's `log` fifo, which containerd reads and
// copies into its own log. The fifo is opened non-blocking and re-opened after containerd restarts;
// a log line that cannot be written is dropped rather than ever blocking or crashing the shim.
import * as fs from 'fs';
import { Writable } from 'stream';
import * as winston from 'winston';
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
    fs.write(fd, chunk, (err) => {
      if (err && (err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        try { fs.closeSync(fd); } catch { /* ignore */ }
        if (this.fd === fd) this.fd = undefined;
      }
      cb();
    });
  }
  override _final(cb: () => void): void {
    if (this.fd !== undefined) try { fs.closeSync(this.fd); } catch { /* ignore */ }
    cb();
  }
}

export type Logger = BackendLogger & { child(meta: Record<string, unknown>): Logger; close(): Promise<void> };

export function createLogger(opts: { file?: string; level: string; meta?: Record<string, unknown>; stream?: Writable }): Logger {
  const stream = opts.stream ?? new FifoWriter(opts.file ?? 'log');
  const w = winston.createLogger({
    level: opts.level,
    defaultMeta: { component: 'katavol-shim', pid: process.pid, ...opts.meta },
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Stream({ stream })],
    exitOnError: false,
  });
  w.on('error', () => undefined);
  return wrap(w, stream);
}

function wrap(w: winston.Logger, stream: Writable): Logger {
  return {
    debug: (m, meta) => void w.debug(m, meta),
    info: (m, meta) => void w.info(m, meta),
    warn: (m, meta) => void w.warn(m, meta),
    error: (m, meta) => void w.error(m, meta),
    child: (meta) => wrap(w.child(meta), stream),
    close: () => new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 500);
      stream.end(() => { clearTimeout(t); resolve(); });
    }),
  };
}
