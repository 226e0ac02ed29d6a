// The shim's JSON config: KATAVOL_CONFIG, default /etc/katavol/config.json. A missing default file
// means "all defaults"; a file that exists but is wrong is a start error naming the file and key.
import * as fs from 'fs';
import * as path from 'path';
import { UnreadableFileError, readRegularFile } from '../volumes/files';
import { messageOf } from '../volumes/types';

export const DEFAULT_CONFIG_PATH = '/etc/katavol/config.json';
/** A config is a few hundred bytes; anything far larger is not one. */
const CONFIG_MAX_BYTES = 1 << 20;
export const KATA_DOWNSTREAM = '/opt/kata/bin/containerd-shim-kata-v2';
export const RUNC_DOWNSTREAM = 'containerd-shim-runc-v2';
export const DEFAULT_SOCKET_DIR = '/run/katavol';
export const BACKENDS = ['runtime-rs', 'runc'] as const;
export type BackendName = (typeof BACKENDS)[number];
const LOG_LEVELS = ['error', 'warn', 'info', 'debug'];

export interface ShimConfig {
  file: string;
  backend: BackendName;
  /** Absolute path of the real shim. */
  downstream: string;
  /** Explicit volumeRoot from the file (env KATAVOL_VOLUME_ROOT still wins, see volume registry). */
  volumeRoot?: string;
  logLevel?: string;
  /** Shim log lines: logrus text as containerd's own (default) or JSON. */
  logFormat: 'text' | 'json';
  socketDir: string;
  /** Backend-specific section, parsed by the runtime-rs backend. */
  runtimeRs?: unknown;
  /** Pre-booted daemons kept waiting under socketDir for the next start (0: every start boots Node). */
  warmDaemons: number;
}

export class ConfigError extends Error {
  constructor(readonly file: string, readonly key: string, problem: string, options?: ErrorOptions) {
    super(`katavol config ${file}: ${key ? `key "${key}": ` : ''}${problem}`, options);
    this.name = 'ConfigError';
  }
}

const KNOWN_KEYS = new Set(['backend', 'downstream', 'volumeRoot', 'logLevel', 'logFormat', 'socketDir', 'runtimeRs', 'warmDaemons']);
export const DEFAULT_WARM_DAEMONS = 1;
export const MAX_WARM_DAEMONS = 64;

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.KATAVOL_CONFIG || DEFAULT_CONFIG_PATH;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): ShimConfig {
  const file = configPath(env);
  let raw: Record<string, unknown> = {};
  let text: string | undefined;
  try {
    // Never blocks on a FIFO put there (every container start reads this file).
    text = readRegularFile(file, { maxBytes: CONFIG_MAX_BYTES, follow: true });
    if (text === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${file}'`), { code: 'ENOENT' });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // Only the default path may be absent: an explicit KATAVOL_CONFIG that is missing is a mistake.
    if (!(err.code === 'ENOENT' && !env.KATAVOL_CONFIG)) {
      const problem = e instanceof UnreadableFileError ? e.problem : err.message;
      throw new ConfigError(file, '', `cannot read: ${problem}; create it or fix KATAVOL_CONFIG`);
    }
  }
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(file, '', `not valid JSON (${messageOf(e)}); fix the file`, { cause: e });
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ConfigError(file, '', 'must be a JSON object like {"backend":"runc"}');
    }
    raw = parsed as Record<string, unknown>;
  }
  for (const k of Object.keys(raw)) {
    if (!KNOWN_KEYS.has(k)) {
      throw new ConfigError(file, k, `unknown key; known keys are ${[...KNOWN_KEYS].join(', ')}`);
    }
  }
  const str = (k: string): string | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || v === '') throw new ConfigError(file, k, `must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  };

  const backend = (str('backend') ?? 'runtime-rs') as BackendName;
  if (!BACKENDS.includes(backend)) {
    throw new ConfigError(file, 'backend', `"${backend}" is not a backend; use one of ${BACKENDS.join(', ')}`);
  }
  const logLevel = str('logLevel');
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(file, 'logLevel', `"${logLevel}" is not a level; use one of ${LOG_LEVELS.join(', ')}`);
  }
  const logFormat = str('logFormat') ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') {
    throw new ConfigError(file, 'logFormat', `"${logFormat}" is not a log format; use "text" (containerd's logrus format) or "json"`);
  }
  const volumeRoot = str('volumeRoot');
  if (volumeRoot !== undefined && !path.isAbsolute(volumeRoot)) {
    throw new ConfigError(file, 'volumeRoot', `must be an absolute path, got "${volumeRoot}"`);
  }
  const socketDir = str('socketDir') ?? DEFAULT_SOCKET_DIR;
  if (!path.isAbsolute(socketDir)) throw new ConfigError(file, 'socketDir', `must be an absolute path, got "${socketDir}"`);
  // A socket path must fit sun_path (106 usable bytes): dir + '/' + 64 hex + '.sock'.
  if (Buffer.byteLength(socketDir) + 70 > 106) {
    throw new ConfigError(file, 'socketDir', `"${socketDir}" is too long for unix socket paths (at most 36 bytes)`);
  }

  const warm = raw.warmDaemons ?? DEFAULT_WARM_DAEMONS;
  if (typeof warm !== 'number' || !Number.isInteger(warm) || warm < 0 || warm > MAX_WARM_DAEMONS) {
    throw new ConfigError(file, 'warmDaemons', `must be an integer from 0 (no pre-booted daemons) to ${MAX_WARM_DAEMONS}, got ${JSON.stringify(warm)}`);
  }

  let downstream = str('downstream');
  if (downstream !== undefined && !path.isAbsolute(downstream)) {
    throw new ConfigError(file, 'downstream', `must be an absolute path to the real shim binary, got "${downstream}"`);
  }
  if (downstream === undefined) {
    downstream = backend === 'runc' ? lookPath(RUNC_DOWNSTREAM, env) ?? RUNC_DOWNSTREAM : KATA_DOWNSTREAM;
  }
  return { file, backend, downstream, volumeRoot, logLevel, logFormat, socketDir, runtimeRs: raw.runtimeRs, warmDaemons: warm };
}

/** Checks the downstream is runnable and is not katavol itself (which would recurse forever). */
export function checkDownstream(cfg: ShimConfig, self: string): void {
  const key = 'downstream';
  let real: string;
  try {
    real = fs.realpathSync(cfg.downstream);
    fs.accessSync(real, fs.constants.X_OK);
  } catch (e) {
    throw new ConfigError(cfg.file, key, `downstream shim "${cfg.downstream}" is not an executable file (${(e as NodeJS.ErrnoException).code}); install it or set "${key}" to the real shim's absolute path`);
  }
  let selfReal = self;
  try { selfReal = fs.realpathSync(self); } catch { /* keep as is */ }
  if (real === selfReal || isKatavolLauncher(real)) {
    throw new ConfigError(cfg.file, key, `downstream "${cfg.downstream}" resolves to katavol itself (${real}); set "${key}" to the real shim, e.g. ${KATA_DOWNSTREAM}`);
  }
}

/** Our launcher script (bin/containerd-shim-katavol-v2) carries this marker in its first lines. */
export const LAUNCHER_MARKER = 'katavol shim launcher';
export function isKatavolLauncher(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(512);
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      const head = buf.subarray(0, n).toString('latin1');
      return head.startsWith('#!') && head.includes(LAUNCHER_MARKER);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

export function lookPath(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch { /* next */ }
  }
  return undefined;
}
