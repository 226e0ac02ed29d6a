// The TypeScript twin of the Go peer's katavol.test.Echo service (test/peers/ttrpcpeer/main.go): same
// methods, same payload conventions, so a Go client sees the same answers from either server.
import { Code, TtrpcError, type CallContext, type UnaryHandler } from '../../src/ttrpc';

export const ECHO_SERVICE = 'katavol.test.Echo';

/** Meta's reply: "deadline=yes|no\n" then "key=value\n" per value, keys sorted, values in received order. */
export function formatMeta(metadata: Array<{ key: string; value: string }>, hasDeadline: boolean): string {
  const byKey = new Map<string, string[]>();
  for (const { key, value } of metadata) byKey.set(key, [...(byKey.get(key) ?? []), value]);
  let out = `deadline=${hasDeadline ? 'yes' : 'no'}\n`;
  // Go's sort.Strings orders by bytes; so does comparing with < on ASCII keys.
  for (const key of [...byKey.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const v of byKey.get(key)!) out += `${key}=${v}\n`;
  }
  return out;
}

function abortError(ctx: CallContext): TtrpcError {
  if (ctx.deadline !== undefined && Date.now() >= ctx.deadline) return new TtrpcError(Code.DeadlineExceeded, 'context deadline exceeded');
  return new TtrpcError(Code.Canceled, 'context canceled');
}

export function echoHandlers(): Record<string, UnaryHandler> {
  return {
    Echo: (_ctx, payload) => payload,
    // Payload "CODE:MESSAGE" -> that status.
    Fail: (_ctx, payload) => {
      const text = payload.toString();
      const m = /^(\d+):([\s\S]*)$/.exec(text);
      if (!m) throw new TtrpcError(Code.InvalidArgument, `Fail payload must be CODE:MESSAGE, got ${JSON.stringify(text)}`);
      throw new TtrpcError(Number(m[1]), m[2]);
    },
    // Payload: decimal milliseconds; replies with the payload, or fails when the call's signal aborts.
    Sleep: (ctx, payload) => {
      const ms = Number(payload.toString());
      if (!Number.isInteger(ms) || ms < 0) {
        throw new TtrpcError(Code.InvalidArgument, `Sleep payload must be decimal milliseconds, got ${JSON.stringify(payload.toString())}`);
      }
      return new Promise<Uint8Array>((resolve, reject) => {
        if (ctx.signal.aborted) return reject(abortError(ctx));
        const onAbort = () => { clearTimeout(timer); reject(abortError(ctx)); };
        const timer = setTimeout(() => { ctx.signal.removeEventListener('abort', onAbort); resolve(payload); }, ms);
        ctx.signal.addEventListener('abort', onAbort, { once: true });
      });
    },
    Meta: (ctx) => Buffer.from(formatMeta(ctx.metadata, ctx.deadline !== undefined)),
  };
}
