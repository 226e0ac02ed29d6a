// A test's subject run in a child process (forked with --expose-gc) and asked for its figures over IPC:
// what the fuzz suites measure (RSS, heap after a forced collection) is then the subject's alone, not
// the harness's. The child sends {ready: true} once serving and answers {op: 'stats'} with one message.
import { type ChildProcess, fork } from 'child_process';

export class MeasuredChild<S> {
  private constructor(private readonly child: ChildProcess) {}

  /** `execArgv`: the Node flags it runs with (--expose-gc at least: the figures are taken after a gc()). */
  static async start<S>(script: string, args: string[], execArgv: readonly string[] = ['--expose-gc']): Promise<MeasuredChild<S>> {
    const child = fork(script, args, { execArgv: [...execArgv], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code, sig) => reject(new Error(`${script} exited before serving (${code ?? sig})`)));
    });
    return new MeasuredChild<S>(child);
  }

  /** Its figures; rejects when the process died (a crash). */
  stats(): Promise<S> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null, sig: string | null) => reject(new Error(`the measured process died (${code ?? sig}): a crash`));
      this.child.once('exit', onExit);
      this.child.once('message', (m) => {
        this.child.removeListener('exit', onExit);
        resolve(m as S);
      });
      this.child.send({ op: 'stats' });
    });
  }

  /** Its figures once `settled` holds of them (asked every 10 ms, at most 1000 times), else the last ones. */
  async statsWhen(settled: (s: S) => boolean): Promise<S> {
    let s = await this.stats();
    for (let i = 0; !settled(s) && i < 1000; i++) {
      await new Promise((r) => setTimeout(r, 10));
      s = await this.stats();
    }
    return s;
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

export interface MemoryFigures {
  rss: number;
  /** V8 heap: in use, and committed (what V8 has reserved and may have touched; part of RSS). */
  heapUsed: number;
  heapTotal: number;
  /** Memory outside the V8 heap that V8 knows of: Buffers and other ArrayBuffers (arrayBuffers), and more. */
  external: number;
  arrayBuffers: number;
  /** Kinds of the handles keeping the process alive (PipeWrap, Timeout, ...): process.getActiveResourcesInfo(). */
  handles: string[];
}

/**
 * The subject's side: its figures after a full collection whose ArrayBuffer sweeping has finished (V8
 * frees the backing stores of dead buffers after gc() returns, so `external` read at once still counts
 * some socket chunks and frames: 2 to 10 MiB of noise in the proxy fuzz). Needs --expose-gc.
 */
export async function settledMemory(): Promise<MemoryFigures> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('settledMemory needs node --expose-gc');
  gc();
  await new Promise((r) => setTimeout(r, 20));
  gc();
  // Node opens stdout and stderr on first use (a handle each): open them before the first count.
  void process.stdout;
  void process.stderr;
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, handles: process.getActiveResourcesInfo() };
}

const mib = (n: number): string => (n / 2 ** 20).toFixed(1);

/** The figures as one line, e.g. for a trace. */
export function memoryLine(m: MemoryFigures): string {
  return `RSS ${mib(m.rss)} MiB, V8 heap ${mib(m.heapUsed)} used / ${mib(m.heapTotal)} committed, external ${mib(m.external)} (buffers ${mib(m.arrayBuffers)}) MiB, handles ${m.handles.join(' ')}`;
}

/**
 * The memory verdict of a fuzz run, from settled figures (settledMemory) taken before, a quarter in (the
 * subject has reached most of its working size: V8 and malloc keep pages they used once) and after.
 * A leak grows with the input; a working set does not. So:
 * - the V8 heap in use and the memory outside it (external: buffers) end where they began, within 16 MiB,
 *   and no handle (socket, timer) outlives the connections;
 * - RSS adds no more than 16 MiB over the last three quarters (`plateau`: only for runs long enough that a
 *   quarter of them reaches the working size, as make fuzz's), not counting what V8 newly committed to its
 *   heap meanwhile: V8 grows its young generation in steps while the load goes on (8 -> 16 -> 32 MiB of
 *   new space in the proxy fuzz, the last step after 450,000 frames), up to its fixed maximum; that is
 *   sizing, bounded by V8's limits, and a leak of JS objects shows in the heap in use instead;
 * - the working set itself grows by less than 96 MiB (the daemon's heap cap, DAEMON_HEAP_FLAG).
 * Returns the figures as one line.
 */
export function checkMemory(what: string, before: MemoryFigures, warm: MemoryFigures, after: MemoryFigures, opts: { plateau: boolean }): string {
  const three = (f: (m: MemoryFigures) => number) => `${mib(f(before))} -> ${mib(f(warm))} -> ${mib(f(after))}`;
  const line = `RSS ${three((m) => m.rss)} MiB (before -> a quarter in -> after), V8 heap used ${three((m) => m.heapUsed)} MiB, `
    + `committed ${three((m) => m.heapTotal)} MiB, external ${three((m) => m.external)} MiB, handles ${before.handles.join(' ')} -> ${after.handles.join(' ')}`;
  const MiB = 2 ** 20;
  if (after.heapUsed - before.heapUsed >= 16 * MiB) throw new Error(`${what}: the heap in use grew: ${line}`);
  if (after.external - before.external >= 16 * MiB) throw new Error(`${what}: memory outside the heap (buffers) grew: ${line}`);
  if (after.handles.length > before.handles.length) throw new Error(`${what}: handles were left open: ${line}`);
  const heapGrowth = Math.max(0, after.heapTotal - warm.heapTotal);
  if (opts.plateau && after.rss - warm.rss - heapGrowth >= 16 * MiB) throw new Error(`${what}: RSS kept growing after the working size was reached: ${line}`);
  if (after.rss - before.rss >= 96 * MiB) throw new Error(`${what}: the working set grew by more than 96 MiB: ${line}`);
  return line;
}
