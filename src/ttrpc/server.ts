// TTRPC server: a service registry plus listeners; each accepted socket is served by a ServerConnection.

import * as fs from 'fs';
import * as net from 'net';
import { Channel } from './channel';
import { MESSAGE_LENGTH_MAX } from './frame';
import { ServiceRegistry, type StreamHandler, type StreamKind, type UnaryHandler } from './handlers';
import { ServerConnection } from './server-conn';
import { messageOf } from './errors';

export interface ServerOptions {
  /** Largest message accepted/sent; default MESSAGE_LENGTH_MAX (4 MiB). */
  maxLength?: number;
  /** Non-fatal problems: connection errors, handlers that threw a non-TtrpcError or returned a non-buffer. */
  onError?: (err: Error) => void;
}

export interface ShutdownOptions {
  /** How long to wait for in-flight calls before closing anyway; default 10000 ms. */
  timeoutMs?: number;
}

export class Server {
  private readonly registry = new ServiceRegistry();
  private readonly maxLength: number;
  private readonly onError: (err: Error) => void;
  private readonly listeners = new Set<net.Server>();
  private readonly connections = new Set<ServerConnection>();
  private stopping = false;
  private idleWaiters: (() => void)[] = [];
  private closedWaiters: (() => void)[] = [];

  constructor(opts?: ServerOptions) {
    this.maxLength = opts?.maxLength ?? MESSAGE_LENGTH_MAX;
    this.onError = opts?.onError ?? (() => {});
  }

  /** Registers unary methods of a service (may be called several times per service; a duplicate method throws). */
  register(service: string, methods: Record<string, UnaryHandler>): void {
    for (const [name, handler] of Object.entries(methods)) {
      if (typeof handler !== 'function') throw new TypeError(`ttrpc: handler for ${service}/${name} is not a function`);
      this.registry.add(service, name, { kind: 'unary', handler });
    }
  }

  /** Registers a streaming method; see StreamHandler for how it ends. */
  registerStream(service: string, method: string, handler: StreamHandler, kind: StreamKind): void {
    if (typeof handler !== 'function') throw new TypeError(`ttrpc: handler for ${service}/${method} is not a function`);
    this.registry.add(service, method, {
      kind: 'stream',
      handler,
      stream: { clientStream: !!kind.clientStream, serverStream: !!kind.serverStream },
    });
  }

  /**
   * Listens on a unix socket path, created with mode 0600. Fails (and removes nothing) if the path exists;
   * the socket file is removed again when the server closes.
   */
  listen(path: string): Promise<void> {
    if (this.stopping) return Promise.reject(stoppedError());
    const srv = this.newListener();
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.listeners.delete(srv);
        const hint =
          err.code === 'EADDRINUSE'
            ? ' (the path already exists: remove the stale socket if no server uses it, or pick another path)'
            : '';
        reject(new Error(`ttrpc: cannot listen on ${path}: ${err.message}${hint}`));
      };
      srv.once('error', onError);
      let oldMask: number | undefined;
      try {
        oldMask = process.umask(0o177); // bind creates the socket as 0600: no window with wider access
      } catch {
        oldMask = undefined; // umask is unavailable in worker threads; chmod below still applies
      }
      try {
        srv.listen(path, () => {
          srv.removeListener('error', onError);
          srv.on('error', (err) => this.onError(new Error(`ttrpc: listener on ${path}: ${err.message}`)));
          try {
            fs.chmodSync(path, 0o600);
          } catch (err) {
            srv.close();
            this.listeners.delete(srv);
            reject(new Error(`ttrpc: cannot set mode 0600 on ${path}: ${messageOf(err)}`, { cause: err }));
            return;
          }
          resolve();
        });
      } finally {
        if (oldMask !== undefined) process.umask(oldMask);
      }
    });
  }

  /** Serves an inherited listening socket (e.g. fd 3 passed by a shim's start). Never unlinks anything. */
  listenFd(fd: number): Promise<void> {
    if (this.stopping) return Promise.reject(stoppedError());
    const srv = this.newListener();
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.listeners.delete(srv);
        reject(new Error(`ttrpc: cannot listen on inherited fd ${fd}: ${err.message} (is it a listening socket?)`));
      };
      srv.once('error', onError);
      srv.listen({ fd }, () => {
        srv.removeListener('error', onError);
        srv.on('error', (err) => this.onError(new Error(`ttrpc: listener on fd ${fd}: ${err.message}`)));
        resolve();
      });
    });
  }

  /** Serves one already-connected socket (closed at once if the server is stopping). */
  serveSocket(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const conn = new ServerConnection(new Channel(socket, { maxLength: this.maxLength }), this.registry, {
      onError: this.onError,
      onIdle: () => this.checkIdle(),
      onClose: (c) => {
        this.connections.delete(c);
        this.checkIdle();
        if (this.connections.size === 0) {
          const waiters = this.closedWaiters;
          this.closedWaiters = [];
          for (const w of waiters) w();
        }
      },
    });
    this.connections.add(conn);
  }

  /** Number of open connections (for tests and diagnostics). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Graceful stop: stop accepting, let in-flight calls finish (each connection closes once idle), then
   * close. After timeoutMs, remaining connections are closed and their handlers aborted.
   */
  async shutdown(opts?: ShutdownOptions): Promise<void> {
    this.stopping = true;
    const listenersClosed = this.closeListeners();
    for (const c of this.connections) c.drain();
    if (this.connections.size > 0) {
      const timeoutMs = opts?.timeoutMs ?? 10000;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          for (const c of this.connections) c.close();
          resolve();
        }, timeoutMs);
        this.idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
        this.checkIdle();
      });
    }
    await listenersClosed;
    await this.allClosed();
  }

  /** Immediate stop: listeners and connections closed, in-flight handlers aborted. */
  close(): void {
    this.stopping = true;
    void this.closeListeners();
    for (const c of this.connections) c.close();
  }

  private newListener(): net.Server {
    const srv = net.createServer((socket) => this.serveSocket(socket));
    this.listeners.add(srv);
    return srv;
  }

  private closeListeners(): Promise<void> {
    const all = [...this.listeners].map(
      (srv) =>
        new Promise<void>((resolve) => {
          this.listeners.delete(srv);
          if (!srv.listening) return resolve();
          // net.Server.close's callback waits for accepted sockets; 'close' on the handle is what we need.
          srv.close(() => resolve());
        }),
    );
    return Promise.all(all).then(() => undefined);
  }

  private checkIdle(): void {
    if (!this.stopping) return;
    for (const c of this.connections) if (c.activeCalls > 0) return;
    if (this.connections.size > 0) {
      // Idle but not yet closed: drain() closes them; wait for their 'close'.
      for (const c of this.connections) c.drain();
    }
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private allClosed(): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }
}

function stoppedError(): Error {
  return new Error('ttrpc: server is shut down; create a new Server to listen again');
}
