// One containerd connection and its downstream twin: every frame crosses as opaque bytes with its
// stream id (so streaming RPCs and unknown services pass untouched). Only task Create is decoded before
// forwarding; Delete and Shutdown are watched so the backend can release and the daemon can exit.
// Large frames that need none of that cross cut-through, piece by piece as they arrive, so a flood of
// 4 MiB frames costs the daemon socket buffers, not 4 MiB assemblies.
import * as net from 'net';
import { Channel } from '../ttrpc/channel';
import { FrameType, HEADER_LENGTH, type Frame, type FrameHead, type FrameSink } from '../ttrpc/frame';
import { peekCallName, peekServiceMethod, decodeRequest, decodeResponse, encodeResponse, type Status } from '../ttrpc/wire';
import { Code, TtrpcError, oversizeError } from '../ttrpc/errors';
import { TASK_SERVICES, decodeCreateTaskRequest, decodeIdExec } from './messages';
import type { CreateInterceptor, InterceptedCreate } from './interceptor';
import type { Logger } from './logger';
import type { GcPacer } from './gc-pacer';

type Watch =
  | { kind: 'create'; prepared: InterceptedCreate }
  | { kind: 'delete'; id: string }
  | { kind: 'start' }
  | { kind: 'shutdown' };

export interface ProxyHooks {
  interceptor: CreateInterceptor;
  log: Logger;
  /** Counts the bytes read from both sockets (see gc-pacer.ts). */
  pacer?: GcPacer;
  /** Called once when both sides are closed. */
  onClosed(p: ProxyConnection, sawShutdown: boolean): void;
}

export class ProxyConnection {
  private readonly up: Channel;
  private down: Channel | undefined;
  /** Frames that arrived before the downstream connection was up. */
  private backlog: Buffer[] | undefined = [];
  private readonly watched = new Map<number, Watch>();
  /**
   * Frames from containerd that came while a Create was being prepared: they follow it, in order, because
   * a ttrpc server (Go's since 1.2, and ours) refuses a request whose stream id is below one it has seen.
   */
  private behindCreate: Frame[] | undefined;
  private sawShutdown = false;
  private done = false;

  constructor(socket: net.Socket, private readonly downstreamPath: string, private readonly hooks: ProxyHooks) {
    const pacer = hooks.pacer;
    if (pacer) socket.on('data', (chunk: Buffer) => pacer.readBytes(chunk.length));
    this.up = new Channel(socket, { onLargeFrame: (head, prefix) => this.cutThroughUp(head, prefix) });
    this.up.on('frame', (f) => this.fromUpstream(f));
    this.up.on('oversize', (streamId, length) => {
      // Answered here like ttrpc does; the downstream never sees the discarded bytes.
      this.reply(streamId, oversizeError(length, this.up.maxLength).toStatus());
    });
    this.up.on('close', () => this.closeBoth());
    const ds = net.connect(downstreamPath);
    ds.once('connect', () => {
      if (this.up.closed) return void ds.destroy();
      if (pacer) ds.on('data', (chunk: Buffer) => pacer.readBytes(chunk.length));
      const down = new Channel(ds, { onLargeFrame: (head) => this.cutThroughDown(head) });
      this.down = down;
      down.on('frame', (f) => this.fromDownstream(f));
      down.on('oversize', (streamId, length) => {
        // Our parser dropped an answer above 4 MiB: tell containerd instead of leaving the call hanging.
        this.watched.delete(streamId);
        this.reply(streamId, oversizeError(length, down.maxLength).toStatus());
      });
      down.on('close', () => this.downstreamClosed());
      // Backpressure both ways: stop reading a side while the other side's socket buffer is full.
      down.on('drain', () => {
        if (!this.behindCreate) this.up.resume();
      });
      this.up.on('drain', () => down.resume());
      const q = this.backlog ?? [];
      this.backlog = undefined;
      for (const raw of q) down.sendRaw(raw);
    });
    ds.once('error', (err) => {
      if (this.down) return; // the Channel reports errors after connect
      hooks.log.error('cannot reach downstream shim', { socket: downstreamPath, error: err.message });
      this.backlog = undefined;
      this.up.close(); // containerd sees EOF, not a hang
      this.closeBoth();
    });
  }

  /**
   * `ofParser`: raw is the upstream parser's frame (not a copy): it is copied if it must wait for the
   * downstream, and otherwise goes back to that parser once written (a flood of 4 MiB frames reuses buffers).
   */
  private forward(raw: Buffer, ofParser: boolean): void {
    if (this.backlog) this.backlog.push(ofParser ? Buffer.from(raw) : raw);
    else if (this.down && !this.down.sendRaw(raw, ofParser ? this.up : undefined) && !this.down.closed) this.up.pause();
  }

  /** `own`: raw is a frame of the downstream parser that nothing else refers to. */
  private toUpstream(raw: Buffer, own = false): void {
    if (!this.up.sendRaw(raw, own ? this.down : undefined) && !this.up.closed) this.down?.pause();
  }

  /** A large frame from containerd passes straight through unless it is a task call we watch. */
  private cutThroughUp(head: FrameHead, prefix: Buffer): FrameSink | undefined {
    if (!this.down || this.down.closed || this.behindCreate) return undefined; // waits whole, in the backlog or behind a Create
    if (head.type === FrameType.Request) {
      const call = peekCallName(prefix);
      if (!call || (TASK_SERVICES.has(call.service) && WATCHED_METHODS.has(call.method))) return undefined;
    }
    return passOn(this.down, head.length, this.up);
  }

  /** A large answer passes straight through unless it answers a call we watch. */
  private cutThroughDown(head: FrameHead): FrameSink | undefined {
    if (this.up.closed || (head.type === FrameType.Response && this.watched.has(head.streamId))) return undefined;
    return passOn(this.up, head.length, this.down as Channel);
  }

  private fromUpstream(f: Frame): void {
    if (this.behindCreate) {
      const raw = Buffer.from(f.raw); // the parser may reuse its buffer
      return void this.behindCreate.push({ ...f, raw, data: raw.subarray(HEADER_LENGTH) });
    }
    if (f.type !== FrameType.Request) return this.forward(f.raw, true);
    let sm: { service: string; method: string };
    try {
      sm = peekServiceMethod(f.data);
    } catch {
      return this.forward(f.raw, true); // let the downstream answer garbage its own way
    }
    if (!TASK_SERVICES.has(sm.service)) return this.forward(f.raw, true);
    switch (sm.method) {
      case 'Create': {
        // Read no more from containerd until it is forwarded (what was read already waits behind it).
        this.behindCreate = [];
        this.up.pause();
        const raw = Buffer.from(f.raw);
        return void this.intercept(f.streamId, raw, raw.subarray(HEADER_LENGTH)).finally(() => this.afterCreate());
      }
      case 'Delete': {
        this.hooks.log.flush();
        const r = safeDecode(() => decodeIdExec(decodeRequest(f.data).payload));
        if (r && !r.execId) this.watched.set(f.streamId, { kind: 'delete', id: r.id });
        break;
      }
      case 'Start':
        if (!this.hooks.log.loaded) this.watched.set(f.streamId, { kind: 'start' });
        break;
      case 'Shutdown':
        this.hooks.log.flush();
        this.sawShutdown = true;
        this.watched.set(f.streamId, { kind: 'shutdown' });
        break;
    }
    this.forward(f.raw, true);
  }

  /** The Create was forwarded or answered: what came behind it goes on, in order (another Create waits again). */
  private afterCreate(): void {
    const waiting = this.behindCreate ?? [];
    this.behindCreate = undefined;
    while (waiting.length > 0) {
      this.fromUpstream(waiting.shift() as Frame);
      const again = this.behindCreate as Frame[] | undefined; // that frame was another Create
      if (again) return void again.push(...waiting);
    }
    if (!this.up.closed) this.up.resume();
  }

  private async intercept(streamId: number, raw: Buffer, data: Buffer): Promise<void> {
    let req: { id: string; bundle: string };
    try {
      req = decodeCreateTaskRequest(decodeRequest(data).payload);
    } catch {
      return this.forward(raw, false);
    }
    let prepared: InterceptedCreate | undefined;
    try {
      prepared = await this.hooks.interceptor.create(req.id, req.bundle);
    } catch (e) {
      const status = createFailureStatus(e);
      this.hooks.log.error('create refused', { container: req.id, error: status.message });
      return this.reply(streamId, status);
    }
    if (prepared) this.watched.set(streamId, { kind: 'create', prepared });
    if (this.up.closed && prepared) {
      // containerd went away while we prepared: nobody will Delete this task.
      this.watched.delete(streamId);
      await prepared.rollback('containerd hung up before Create was forwarded').catch(() => undefined);
      return;
    }
    this.forward(raw, false);
  }

  private fromDownstream(f: Frame): void {
    const w = f.type === FrameType.Response ? this.watched.get(f.streamId) : undefined;
    if (w) {
      this.watched.delete(f.streamId);
      const status = safeDecode(() => decodeResponse(f.data).status ?? { code: 0, message: '' });
      const ok = (status?.code ?? 1) === 0;
      if (w.kind === 'create' && !ok) {
        // Release before containerd hears of the failure, then pass its error through unchanged.
        const raw = Buffer.from(f.raw);
        const reason = status ? `downstream Create failed (code ${status.code}): ${status.message}` : 'downstream Create answered with an undecodable response';
        void w.prepared.rollback(reason).catch((e) => this.hooks.log.error('rollback failed', { error: String(e) })).then(() => this.toUpstream(raw));
        return;
      }
      if (w.kind === 'start') {
        // The task runs: load the logger now, after containerd got its answer, rather than on the
        // start path or when the task is deleted.
        this.toUpstream(f.raw, true);
        return void setImmediate(() => this.hooks.log.flush());
      }
      if (w.kind === 'delete' && ok) {
        void this.hooks.interceptor.deleted(w.id).catch((e) => this.hooks.log.error('release on delete failed', { container: w.id, error: String(e) }));
      }
    }
    this.toUpstream(f.raw, true);
  }

  /** The downstream hung up: Kata's last Shutdown exits without replying, which counts as success. */
  private downstreamClosed(): void {
    for (const [id, w] of this.watched) {
      if (w.kind === 'shutdown') this.up.send(id, FrameType.Response, 0, encodeResponse({}));
      else if (w.kind === 'create') void w.prepared.rollback('the downstream shim exited before answering Create').catch(() => undefined);
    }
    this.watched.clear();
    this.up.close(); // pending calls see EOF (ttrpc: closed), never a hang
    this.closeBoth();
  }

  private reply(streamId: number, status: Status): void {
    this.up.send(streamId, FrameType.Response, 0, encodeResponse({ status }));
  }

  /** Ends both sides (an orphaned daemon's exit). */
  close(): void {
    this.closeBoth();
  }

  private closeBoth(): void {
    if (!this.up.closed) this.up.close();
    if (this.down && !this.down.closed) this.down.close();
    if (this.done) return;
    if (!this.up.closed || (this.down && !this.down.closed)) return;
    this.done = true;
    this.hooks.onClosed(this, this.sawShutdown);
  }
}

/**
 * The one place a failed Create becomes containerd's answer: a coded error (CreateRefused, or any
 * TtrpcError) carries its code and text here together; anything else is a bug of ours: Internal.
 */
export function createFailureStatus(e: unknown): Status {
  if (e instanceof TtrpcError) return e.toStatus();
  return { code: Code.Internal, message: e instanceof Error ? e.message : String(e), details: [] };
}

/** Task methods whose requests the proxy reads (fromUpstream); they are never cut through. */
const WATCHED_METHODS: ReadonlySet<string> = new Set(['Create', 'Delete', 'Start', 'Shutdown']);

/** A frame of `length` written into `to` as it arrives, pausing `from` while `to`'s socket is full (its 'drain' resumes it). */
function passOn(to: Channel, length: number, from: Channel): FrameSink {
  const w = to.openRaw(length);
  return {
    write: (bytes) => {
      if (!w.write(bytes) && !to.closed) from.pause();
    },
    end: () => w.end(),
  };
}

function safeDecode<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
