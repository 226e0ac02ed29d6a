// `katavol csi`'s gRPC server: Identity, Controller and Node on one unix socket, every call answered
// through one wrapper that logs it and turns errors into their gRPC status. Stops on SIGTERM/SIGINT
// and removes its socket, so kubelet's registrar sees it go.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as winston from 'winston';
import { Registry } from '../volumes/registry';
import { ControllerService } from './controller';
import { toStatus } from './errors';
import { IdentityService } from './identity';
import { NodeService } from './node';
import { type CsiOptions, socketPathOf } from './options';
import { loadCsi } from './proto';
import { VolumeStore } from './state';

export type CsiLogger = Pick<winston.Logger, 'info' | 'warn' | 'error'>;

export function stderrLogger(): CsiLogger {
  return winston.createLogger({
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Stream({ stream: process.stderr })],
  });
}

type Handler = (req: never) => object;

/** gRPC handlers for every method `impl` has; the others answer UNIMPLEMENTED (grpc-js's default). */
function handlers(service: grpc.ServiceDefinition, impl: object, log: CsiLogger): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(service)) {
    const fn = (impl as Record<string, Handler | undefined>)[method];
    if (typeof fn !== 'function') continue;
    out[method] = (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) => {
      const started = process.hrtime.bigint();
      const id = call.request.volume_id ?? call.request.name;
      const volumeId = typeof id === 'string' ? id : '';
      const ms = (): number => Number((process.hrtime.bigint() - started) / 1000n) / 1000;
      try {
        const reply = fn.call(impl, call.request as never);
        log.info('csi call', { method, volumeId, ms: ms() });
        cb(null, reply);
      } catch (e) {
        const s = toStatus(e);
        log[s.code === grpc.status.INTERNAL ? 'error' : 'warn']('csi call failed', { method, volumeId, code: grpc.status[s.code], error: s.details, ms: ms() });
        cb({ code: s.code, details: s.details, name: 'Error', message: s.details });
      }
    };
  }
  return out;
}

/** Refuses to take over a socket another live plugin serves; removes a stale one. */
async function claimSocket(sock: string): Promise<void> {
  fs.mkdirSync(path.dirname(sock), { recursive: true, mode: 0o750 });
  let st: fs.Stats;
  try {
    st = fs.lstatSync(sock);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${sock} exists and is not a socket; remove it or choose another --endpoint`);
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(sock, () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
  if (live) throw new Error(`another process serves ${sock}; stop it or choose another --endpoint`);
  fs.rmSync(sock, { force: true });
}

export interface RunningCsi {
  socket: string;
  stop(): Promise<void>;
}

export async function serveCsi(o: CsiOptions, log: CsiLogger): Promise<RunningCsi> {
  const sock = socketPathOf(o.endpoint);
  if (!sock) throw new Error(`endpoint ${JSON.stringify(o.endpoint)} is not unix:///absolute/path`);
  for (const dir of [o.storageDir, o.stateDir]) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await claimSocket(sock);

  const csi = loadCsi();
  const store = new VolumeStore(o.stateDir);
  const server = new grpc.Server();
  server.addService(csi.Identity.service, handlers(csi.Identity.service, new IdentityService(o), log));
  server.addService(csi.Controller.service, handlers(csi.Controller.service, new ControllerService(o, store), log));
  server.addService(csi.Node.service, handlers(csi.Node.service, new NodeService(o, store, new Registry(o.volumeRoot)), log));
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  log.info('katavol csi serving', { socket: sock, driver: o.driverName, node: o.nodeId, storage: o.storageDir, state: o.stateDir, kubeletDir: o.kubeletDir, volumeRoot: o.volumeRoot });

  return {
    socket: sock,
    stop: () => new Promise<void>((resolve) => {
      server.tryShutdown(() => {
        fs.rmSync(sock, { force: true });
        resolve();
      });
    }),
  };
}
