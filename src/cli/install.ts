// `katavol install-runtime` / `uninstall-runtime`: put katavol in front of Kata as the
// io.containerd.kata.v2 runtime. containerd resolves that name to `containerd-shim-kata-v2` on its
// PATH, so a link of that name to our shim, in a directory ahead of Kata's, makes every Kata container
// go through katavol; the katavol config's `downstream` names Kata's real binary. Everything done is
// written to a record next to the link, and uninstall undoes exactly that and nothing else.
import * as fs from 'fs';
import * as path from 'path';
import { type CliContext, EXIT_OK } from './context';
import { noMore, parseArgs } from './args';
import { errnoOf, lstatOrUndefined, writeFileAtomic } from '../volumes/files';
import { messageOf } from '../volumes/types';
import { configPath, DEFAULT_CONFIG_PATH, KATA_DOWNSTREAM, isKatavolLauncher, loadConfig } from '../shim/config';
import { stopPool } from '../shim/pool';

export const RUNTIME_TYPE = 'io.containerd.kata.v2';
/** The binary containerd looks for on its PATH for RUNTIME_TYPE. */
export const RUNTIME_BINARY = 'containerd-shim-kata-v2';
export const RECORD_NAME = `.${RUNTIME_BINARY}.katavol.json`;
export const DEFAULT_PREFIX = '/usr/local';
/** Our shim launcher in the tree this CLI runs from (repo checkout or $PREFIX/lib/katavol). */
export const OUR_SHIM = path.resolve(__dirname, '..', '..', '..', 'bin', 'containerd-shim-katavol-v2');

const USAGE = `usage: katavol install-runtime [--prefix DIR] [--downstream PATH] [--config FILE]
       katavol uninstall-runtime [--prefix DIR]

install-runtime registers katavol as the containerd runtime ${RUNTIME_TYPE}:
  - links DIR/bin/${RUNTIME_BINARY} to katavol's shim (DIR defaults to ${DEFAULT_PREFIX}; put DIR/bin
    ahead of Kata's directory on containerd's PATH, then restart containerd);
  - sets "downstream" in the katavol config (default $KATAVOL_CONFIG or ${DEFAULT_CONFIG_PATH}) to Kata's
    real shim (default ${KATA_DOWNSTREAM}).
It refuses when katavol would become its own downstream. uninstall-runtime undoes exactly what
install-runtime did (recorded in DIR/bin/${RECORD_NAME}).`;

export interface InstallRecord {
  version: 1;
  /** The link we created and what it points to. */
  link: string;
  linkTarget: string;
  /** The symlink that was at `link` before (its target), restored on uninstall. */
  replacedLinkTarget?: string;
  downstream: string;
  config: {
    file: string;
    /** The file did not exist; `createdDirs` are the directories we made for it, deepest first. */
    created: boolean;
    createdDirs?: string[];
    /** The file's text before and after install (restored only if nobody changed it since). */
    before?: string;
    written: string;
  };
}

export class InstallError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InstallError';
  }
}

export interface InstallOptions {
  prefix: string;
  downstream: string;
  config: string;
  /** Defaults to OUR_SHIM (tests may point elsewhere). */
  shim?: string;
}

function realpathOrUndefined(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

export function recordPath(prefix: string): string {
  return path.join(prefix, 'bin', RECORD_NAME);
}

function readConfigObject(file: string, text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new InstallError(`katavol config ${file} is not valid JSON (${messageOf(e)}); fix it first, then run install-runtime again`, { cause: e });
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new InstallError(`katavol config ${file} must be a JSON object like {"backend":"runtime-rs"}; fix it first`);
  }
  return parsed as Record<string, unknown>;
}

/** Checks everything first, then writes the config, the link and the record (undone on failure). */
/** What install-runtime will do, decided by its checks before anything changes. */
interface InstallPlan {
  prefix: string;
  binDir: string;
  link: string;
  record: string;
  shim: string;
  shimReal: string;
  downstream: string;
  configFile: string;
  /** The link to Kata's shim that the new link replaces (restored on uninstall). */
  replacedLinkTarget?: string;
  /** The config file's text before, when it exists. */
  before?: string;
  written: string;
}

export function installRuntime(opts: InstallOptions, say: (line: string) => void): InstallRecord {
  return applyInstall(planInstall(opts), say);
}

/** Every check, before any change: refuses what would break an installation or overwrite a file. */
function planInstall(opts: InstallOptions): InstallPlan {
  const prefix = path.resolve(opts.prefix);
  const binDir = path.join(prefix, 'bin');
  const link = path.join(binDir, RUNTIME_BINARY);
  const record = recordPath(prefix);
  const shim = opts.shim ?? OUR_SHIM;
  const downstream = opts.downstream;
  const configFile = path.resolve(opts.config);

  if (!path.isAbsolute(downstream)) throw new InstallError(`--downstream must be an absolute path to Kata's shim, got "${downstream}"`);
  const shimReal = realpathOrUndefined(shim);
  if (!shimReal || !isKatavolLauncher(shimReal)) throw new InstallError(`katavol's shim launcher ${shim} is missing; run make build (or make install) first`);
  if (fs.existsSync(record)) {
    throw new InstallError(`katavol is already installed as ${RUNTIME_TYPE} in ${binDir} (record ${record}); run katavol uninstall-runtime --prefix ${prefix} first`);
  }
  const downReal = realpathOrUndefined(downstream);
  if (path.resolve(downstream) === link) {
    throw new InstallError(`downstream ${downstream} is the link install-runtime would create: katavol would be its own downstream; pass --downstream with the real Kata binary (e.g. ${KATA_DOWNSTREAM}) or choose another --prefix`);
  }
  if (downReal && (downReal === shimReal || isKatavolLauncher(downReal))) {
    throw new InstallError(`downstream ${downstream} resolves to katavol's own shim (${downReal}): katavol would be its own downstream; pass --downstream with the real Kata binary (e.g. ${KATA_DOWNSTREAM})`);
  }
  let downStat: fs.Stats | undefined;
  try {
    downStat = downReal ? fs.statSync(downReal) : undefined;
    if (downReal) fs.accessSync(downReal, fs.constants.X_OK);
  } catch {
    downStat = undefined;
  }
  if (!downReal || !downStat?.isFile()) {
    throw new InstallError(`downstream ${downstream} is not an executable file; install Kata Containers first or pass --downstream with the path of its containerd-shim-kata-v2`);
  }
  if (!fs.existsSync(binDir)) throw new InstallError(`${binDir} does not exist; run make install PREFIX=${prefix} first, or pick the --prefix katavol was installed to`);
  const existing = lstatOrUndefined(link);
  let replacedLinkTarget: string | undefined;
  if (existing) {
    // Only a link to the very binary we forward to may be replaced (kata-deploy makes one); it comes back on uninstall.
    if (existing.isSymbolicLink() && realpathOrUndefined(link) === downReal) {
      replacedLinkTarget = fs.readlinkSync(link);
    } else {
      throw new InstallError(`${link} already exists and is not a link to ${downstream}; move it away or choose another --prefix (install-runtime never overwrites files)`);
    }
  }
  let before: string | undefined;
  let obj: Record<string, unknown> = {};
  try {
    before = fs.readFileSync(configFile, 'utf8');
    obj = readConfigObject(configFile, before);
  } catch (e) {
    if (e instanceof InstallError) throw e;
    if (errnoOf(e) !== 'ENOENT') throw new InstallError(`cannot read katavol config ${configFile}: ${messageOf(e)}`, { cause: e });
  }
  const written = JSON.stringify(before === undefined ? { backend: 'runtime-rs', downstream } : { ...obj, downstream }, null, 2) + '\n';

  return { prefix, binDir, link, record, shim, shimReal, downstream, configFile, replacedLinkTarget, before, written };
}

/** The changes, undone in reverse order if a later one fails. */
function applyInstall(plan: InstallPlan, say: (line: string) => void): InstallRecord {
  const { prefix, binDir, link, record, shim, shimReal, downstream, configFile, replacedLinkTarget, before, written } = plan;
  const undo: Array<() => void> = [];
  try {
    const createdDirs: string[] = [];
    const top = fs.mkdirSync(path.dirname(configFile), { recursive: true, mode: 0o755 });
    if (top) {
      for (let d = path.dirname(configFile); ; d = path.dirname(d)) {
        createdDirs.push(d);
        if (d === top) break;
      }
      undo.push(() => { for (const d of createdDirs) fs.rmdirSync(d); });
    }
    writeFileAtomic(configFile, written, { mode: 0o644 });
    undo.push(() => (before === undefined ? fs.rmSync(configFile, { force: true }) : writeFileAtomic(configFile, before, { mode: 0o644 })));
    say(`${before === undefined ? 'created' : 'updated'} ${configFile}: "downstream": ${JSON.stringify(downstream)}`);

    // A relative link when our shim sits beside it (make install), else the launcher's absolute path.
    const beside = path.join(binDir, 'containerd-shim-katavol-v2');
    const linkTarget = realpathOrUndefined(beside) === shimReal ? 'containerd-shim-katavol-v2' : shim;
    if (replacedLinkTarget !== undefined) {
      fs.rmSync(link);
      undo.push(() => fs.symlinkSync(replacedLinkTarget, link));
    }
    fs.symlinkSync(linkTarget, link);
    undo.push(() => fs.rmSync(link, { force: true }));
    say(`linked ${link} -> ${linkTarget}${replacedLinkTarget !== undefined ? ` (replacing the link to ${replacedLinkTarget}, restored on uninstall)` : ''}`);

    const rec: InstallRecord = {
      version: 1, link, linkTarget, downstream,
      ...(replacedLinkTarget !== undefined ? { replacedLinkTarget } : {}),
      config: { file: configFile, created: before === undefined, ...(createdDirs.length ? { createdDirs } : {}), ...(before !== undefined ? { before } : {}), written },
    };
    writeFileAtomic(record, JSON.stringify(rec, null, 2) + '\n', { mode: 0o644 });
    say(`recorded the installation in ${record} (katavol uninstall-runtime --prefix ${prefix} undoes it)`);
    return rec;
  } catch (e) {
    for (const u of undo.reverse()) {
      try { u(); } catch { /* best effort: report the original failure */ }
    }
    if (e instanceof InstallError) throw e;
    throw new InstallError(`install-runtime failed and was rolled back: ${messageOf(e)}`, { cause: e });
  }
}

/** Undoes what the record says install-runtime did; leaves anything changed since then alone, saying so. */
export function uninstallRuntime(prefixArg: string, say: (line: string) => void): void {
  const prefix = path.resolve(prefixArg);
  const record = recordPath(prefix);
  let rec: InstallRecord;
  try {
    rec = JSON.parse(fs.readFileSync(record, 'utf8')) as InstallRecord;
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw new InstallError(`no install-runtime record at ${record}: katavol is not installed as ${RUNTIME_TYPE} with --prefix ${prefix}`, { cause: e });
    throw new InstallError(`cannot read the install-runtime record ${record}: ${messageOf(e)}; remove ${path.join(prefix, 'bin', RUNTIME_BINARY)} and fix "downstream" in your katavol config by hand`, { cause: e });
  }

  const st = lstatOrUndefined(rec.link);
  if (st?.isSymbolicLink() && fs.readlinkSync(rec.link) === rec.linkTarget) {
    fs.rmSync(rec.link);
    say(`removed ${rec.link}`);
  } else {
    say(`left ${rec.link} alone: it is no longer the link install-runtime made`);
  }
  if (rec.replacedLinkTarget !== undefined) {
    if (lstatOrUndefined(rec.link)) say(`did not restore ${rec.link} -> ${rec.replacedLinkTarget}: something else is there now`);
    else {
      fs.symlinkSync(rec.replacedLinkTarget, rec.link);
      say(`restored ${rec.link} -> ${rec.replacedLinkTarget}`);
    }
  }

  const c = rec.config;
  let current: string | undefined;
  try {
    current = fs.readFileSync(c.file, 'utf8');
  } catch { /* removed meanwhile */ }
  if (current === undefined) {
    say(`${c.file} is gone; nothing to restore there`);
  } else if (current === c.written) {
    if (c.created) {
      fs.rmSync(c.file);
      say(`removed ${c.file}`);
      for (const d of c.createdDirs ?? []) {
        try {
          fs.rmdirSync(d);
          say(`removed ${d}`);
        } catch {
          break; // not empty: someone else's files
        }
      }
    } else {
      writeFileAtomic(c.file, c.before ?? '', { mode: 0o644 });
      say(`restored ${c.file} as it was before install-runtime`);
    }
  } else {
    say(`left ${c.file} alone: it was edited after install-runtime (its "downstream" is still ${JSON.stringify(rec.downstream)} unless you changed it)`);
  }
  fs.rmSync(record);
  say(`removed ${record}`);
}

/** Warnings about containerd finding our link: it looks up RUNTIME_BINARY on its own PATH. */
export function pathNotes(binDir: string, envPath: string | undefined): string[] {
  const dirs = (envPath ?? '').split(':').filter(Boolean).map((d) => path.resolve(d));
  const ours = dirs.indexOf(binDir);
  const notes: string[] = [];
  const earlier = dirs.slice(0, ours < 0 ? dirs.length : ours).find((d) => fs.existsSync(path.join(d, RUNTIME_BINARY)));
  if (ours < 0) notes.push(`${binDir} is not on this shell's PATH; containerd must have it on its PATH, ahead of Kata's directory (systemd: Environment=PATH=${binDir}:...)`);
  else if (earlier) notes.push(`${path.join(earlier, RUNTIME_BINARY)} comes before ${binDir} on PATH: containerd would run that one; put ${binDir} first on containerd's PATH`);
  return notes;
}

export function run(argv: string[], ctx: CliContext): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    ctx.out(USAGE + '\n');
    return EXIT_OK;
  }
  const a = parseArgs(argv, ['prefix', 'downstream', 'config'], [], USAGE);
  noMore(a, USAGE);
  const prefix = path.resolve(a.values.get('prefix') ?? DEFAULT_PREFIX);
  const config = path.resolve(a.values.get('config') ?? configPath(ctx.env));
  // An InstallError says what is wrong and what to do; runCli prints it.
  installRuntime({ prefix, downstream: a.values.get('downstream') ?? KATA_DOWNSTREAM, config }, (l) => ctx.out(l + '\n'));
  for (const n of pathNotes(path.join(prefix, 'bin'), ctx.env.PATH)) ctx.err(`katavol: note: ${n}\n`);
  if (config !== DEFAULT_CONFIG_PATH) ctx.err(`katavol: note: the shim reads ${DEFAULT_CONFIG_PATH} unless KATAVOL_CONFIG is set: give containerd KATAVOL_CONFIG=${config}\n`);
  ctx.out(`restart containerd so it resolves ${RUNTIME_TYPE} again (it caches runtime paths)\n`);
  return EXIT_OK;
}

export async function runUninstall(argv: string[], ctx: CliContext): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    ctx.out(USAGE + '\n');
    return EXIT_OK;
  }
  const a = parseArgs(argv, ['prefix'], [], USAGE);
  noMore(a, USAGE);
  const prefix = a.values.get('prefix') ?? DEFAULT_PREFIX;
  // The pool lives under the installed config's socketDir: read it before the config is restored.
  let socketDir: string | undefined;
  try {
    const rec = JSON.parse(fs.readFileSync(recordPath(path.resolve(prefix)), 'utf8')) as InstallRecord;
    socketDir = loadConfig({ ...ctx.env, KATAVOL_CONFIG: rec.config.file }).socketDir;
  } catch { /* no record or no usable config: uninstallRuntime says what is wrong */ }
  uninstallRuntime(prefix, (l) => ctx.out(l + '\n'));
  if (socketDir) {
    const pids = await stopPool(socketDir);
    ctx.out(`stopped ${pids.length} warm shim daemon(s) in ${socketDir}\n`);
  }
  return EXIT_OK;
}
