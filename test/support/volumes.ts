// Volume and backend fixtures every suite shares: a scratch registry per test, registry entries as
// parsed, resolved mounts, a live socket standing in for a vhost-user target, and backend loggers (one
// that records what was logged, one that drops it).
import * as net from 'net';
import * as path from 'path';
import type { BackendLogger } from '../../src/backends/backend';
import { Registry } from '../../src/volumes/registry';
import type { VolumeInput } from '../../src/backends/runtime-rs/volume';
import type { MountInfo, OciMount, ResolvedVolume } from '../../src/volumes/types';
import { LoopFixture } from './disks';
import { removeDir, scratchDir } from './scratch';

/** What useScratchRegistry gives the tests of a block; the fields are new for every test, so read them inside hooks and tests. */
export interface ScratchRegistry {
  scratch: string;
  /** The registry's root, <scratch>/<rootPath>; nothing is created there until the first add. */
  root: string;
  reg: Registry;
  /** Loop devices, mounts and swaps made through it are undone after each test. */
  readonly loops: LoopFixture;
}

/**
 * The set-up the volume and backend suites share. Before each test of the calling describe block: a fresh
 * scratch directory (katavol-<tag>-XXXXXX) and an empty registry under it. After each test: what was made
 * through `loops` is undone, then the directory is removed. Mocha runs a block's hooks in the order they
 * are declared, so the block's own beforeEach, declared after this call, already sees the new fields.
 */
export function useScratchRegistry(tag: string, rootPath = 'root', loops = new LoopFixture()): ScratchRegistry {
  const fx = { loops, scratch: '', root: '', reg: undefined as unknown as Registry };
  beforeEach(() => {
    fx.scratch = scratchDir(tag);
    fx.root = path.join(fx.scratch, rootPath);
    fx.reg = new Registry(fx.root);
  });
  afterEach(async () => {
    try {
      await fx.loops.cleanup();
    } finally {
      removeDir(fx.scratch);
    }
  });
  return fx;
}

/** A Unix socket something listens on, at sock: what the host checks take for a live SPDK vhost-user target. */
export async function listeningSocket(sock: string): Promise<net.Server> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sock, resolve);
  });
  return server;
}

/** Stops a server and waits until it has (its socket file is gone then). */
export function closeServer(server: net.Server): Promise<void> {
  return new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Before the tests of the calling describe block: a scratch directory (katavol-<tag>-XXXXXX) with a live
 * vhost-user socket at <dir>/vhost.0; after them the socket is closed and the directory removed.
 */
export function useVhostSocket(tag: string): { dir: string; sock: string } {
  const fx = { dir: '', sock: '' };
  let server: net.Server | undefined;
  before(async () => {
    fx.dir = scratchDir(tag);
    fx.sock = path.join(fx.dir, 'vhost.0');
    server = await listeningSocket(fx.sock);
  });
  after(async () => {
    if (server) await closeServer(server);
    removeDir(fx.dir);
  });
  return fx;
}

export function mountInfo(volumeType: MountInfo['volumeType'], device: string, extra: Partial<MountInfo> = {}): MountInfo {
  return { volumeType, device, fsType: 'ext4', metadata: {}, options: [], ...extra };
}

export function resolved(index: number, mount: OciMount, volumePath: string, info: MountInfo, readOnly = false): ResolvedVolume {
  return {
    index,
    mount,
    volumePath,
    entryDir: `/registry/${volumePath}`,
    file: `/registry/${volumePath}/mountInfo.json`,
    info,
    readOnly,
  };
}

/** One volume as a runtime-rs device builder receives it. */
export function volumeInput(info: MountInfo, over: Partial<VolumeInput> = {}): VolumeInput {
  return {
    volumePath: '/kubelet/vol-1',
    destination: '/data',
    info,
    file: '/tmp/registry/L2t1YmVsZXQvdm9sLTE=/mountInfo.json',
    readOnly: false,
    ociOptions: [],
    ...over,
  };
}

export interface LogLine {
  level: string;
  msg: string;
  meta?: Record<string, unknown>;
}

export function recordingLog(): BackendLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (msg: string, meta?: Record<string, unknown>) => {
    lines.push({ level, msg, meta });
  };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A logger for code under test whose logging is not what the test checks. */
export const quietLog: BackendLogger = { debug() {}, info() {}, warn() {}, error() {} };
