// An unbounded async queue of received stream messages (ttrpc has no flow control, so neither does this).

interface Waiter {
  resolve(v: Buffer | undefined): void;
  reject(err: unknown): void;
}

export class MessageQueue implements AsyncIterable<Buffer> {
  private items: Buffer[] = [];
  private head = 0;
  private waiters: Waiter[] = [];
  private ended = false;
  private error: unknown = undefined;
  private failed = false;

  /** True once end() or fail() was called. */
  get finished(): boolean {
    return this.ended || this.failed;
  }

  push(msg: Buffer): void {
    if (this.finished) return;
    const w = this.waiters.shift();
    if (w) w.resolve(msg);
    else this.items.push(msg);
  }

  /** No more messages: once the buffered ones are read, recv() yields undefined. */
  end(): void {
    if (this.finished) return;
    this.ended = true;
    for (const w of this.waiters.splice(0)) w.resolve(undefined);
  }

  /** Ends with an error: buffered messages are still delivered, then every recv() rejects with err. */
  fail(err: unknown): void {
    if (this.finished) return;
    this.failed = true;
    this.error = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  /** The next message, or undefined when the sender finished. */
  recv(): Promise<Buffer | undefined> {
    if (this.head < this.items.length) {
      const m = this.items[this.head];
      this.items[this.head++] = undefined as unknown as Buffer;
      if (this.head === this.items.length) {
        this.items = [];
        this.head = 0;
      }
      return Promise.resolve(m);
    }
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- rejects with what fail() was given
    if (this.failed) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const m = await this.recv();
      if (m === undefined) return;
      yield m;
    }
  }
}
