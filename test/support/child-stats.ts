// A test's subject run in a child process (forked with --expose-gc) and asked for its figures over IPC:
// what the fuzz suites measure (RSS, heap after a forced collection) is then the subject's alone, not
// the harness's. The child sends {ready: true} once serving and answers {op: 'stats'} with one message.
import { type ChildProcess, fork } from 'child_process';

export class MeasuredChild<S> {
  private constructor(private readonly child: ChildProcess) {}

  static async start<S>(script: string, args: string[]): Promise<MeasuredChild<S>> {
    const child = fork(script, args, { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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
  heapUsed: number;
}

const mib = (n: number): string => (n / 2 ** 20).toFixed(1);

/**
 * The memory verdict of a fuzz run, from figures taken after forced collections: before, a quarter in
 * (the subject has reached its working size: V8 and malloc keep pages they used once) and after.
 * A leak grows with the input; a working set does not. So: the heap in use ends where it began (within
 * 16 MiB), RSS adds no more than 16 MiB over the last three quarters (`plateau`: only for runs long
 * enough that a quarter of them reaches the working size, as make fuzz's), and the working set itself stays
 * under 96 MiB (the daemon's heap cap, DAEMON_HEAP_FLAG). Returns the figures as one line.
 */
export function checkMemory(what: string, before: MemoryFigures, warm: MemoryFigures, after: MemoryFigures, opts: { plateau: boolean }): string {
  const line = `RSS ${mib(before.rss)} -> ${mib(warm.rss)} (a quarter in) -> ${mib(after.rss)} MiB, heap used ${mib(before.heapUsed)} -> ${mib(warm.heapUsed)} -> ${mib(after.heapUsed)} MiB`;
  const MiB = 2 ** 20;
  if (after.heapUsed - before.heapUsed >= 16 * MiB) throw new Error(`${what}: the heap in use grew: ${line}`);
  if (opts.plateau && after.rss - warm.rss >= 16 * MiB) throw new Error(`${what}: RSS kept growing after the working size was reached: ${line}`);
  if (after.rss - before.rss >= 96 * MiB) throw new Error(`${what}: the working set grew by more than 96 MiB: ${line}`);
  return line;
}
