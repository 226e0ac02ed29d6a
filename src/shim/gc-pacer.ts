// Node reads every socket chunk into a buffer of its own, and V8 frees such buffers only at a collection,
// which it starts for them once 64 MiB has built up (its external-memory soft limit). A daemon forwarding a
// flood of large frames would carry that much garbage on top of its working set, over its memory budget.
// So the daemon counts what it reads and asks for a young-generation collection every PACE bytes: the
// chunks die young, and a scavenge of this small heap takes well under a millisecond.
// gc() exists only with --expose-gc (DAEMON_NODE_FLAGS); without it this does nothing.

/** Bytes read between two collections. */
export const PACE = 8 << 20;

type Gc = (options: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

export class GcPacer {
  private read = 0;
  /** How many collections were asked for (for the daemon's figures). */
  collections = 0;

  constructor(private readonly gc: Gc | undefined = (globalThis as { gc?: Gc }).gc) {}

  /** Counts `n` bytes read from a socket; collects once PACE bytes have built up. */
  readBytes(n: number): void {
    this.read += n;
    if (this.read < PACE || !this.gc) return;
    this.read = 0;
    this.collections++;
    this.gc({ type: 'minor' });
  }
}
