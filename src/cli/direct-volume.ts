// `katavol direct-volume ...`: kata-ctl's subcommands (add, remove, stats, resize) with its positional
// syntax and the Go runtime's flags, plus list and inspect. Success prints one line (Kata prints nothing).
import * as fs from 'fs';
import { CliContext, EXIT_OK, EXIT_USAGE, UsageError } from './context';
import { noMore, parseArgs, take } from './args';
import { KATA_VOLUME_ROOT, Registry, VOLUME_ROOT_ENV, type SandboxUse } from '../volumes/registry';
import { serializeMountInfo } from '../volumes/mountinfo';
import { MountInfo } from '../volumes/types';

const USAGE = `usage: katavol direct-volume <command> [arguments]

commands (kata-ctl syntax; the kata-runtime flags in brackets work too):
  add <volume-path> '<mount-info-json>'   [--volume-path P --mount-info J]   register or replace a volume
  remove <volume-path>                     [--volume-path P]                  unregister a volume
  stats <volume-path>                      [--volume-path P]                  host-side size and usage, as JSON
  resize <volume-path> <size>              [--volume-path P --size N]         grow an image-file volume (bytes or 10G, 512M, ...)
  list [--json]                                                               every registered volume
  inspect <volume-path>                                                       stored mountInfo, directory, sandboxes (JSON)

The registry root is /run/kata-containers/shared/direct-volumes, or $KATAVOL_VOLUME_ROOT.
Example: katavol direct-volume add /kubelet/vol1 '{"volume-type":"directvol","device":"/srv/vol1.img","fstype":"ext4"}'`;

type Sub = (argv: string[], ctx: CliContext, reg: Registry) => number;

const SUBCOMMANDS: Record<string, Sub> = { add, remove, stats, resize, list, inspect };

export function run(argv: string[], ctx: CliContext): number {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h') {
    ctx.out(USAGE + '\n');
    return sub === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const handler = Object.prototype.hasOwnProperty.call(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (!handler) throw new UsageError(`unknown direct-volume command ${JSON.stringify(sub)}`, USAGE);
  if (rest.includes('--help') || rest.includes('-h')) {
    ctx.out(USAGE + '\n');
    return EXIT_OK;
  }
  // Same rule as the shim (env, then the shim config's volumeRoot, then Kata's root), so one
  // config serves both; with the environment of this invocation.
  return handler(rest, ctx, new Registry(ctx.env[VOLUME_ROOT_ENV] || configuredRoot(ctx) || KATA_VOLUME_ROOT));
}

function configuredRoot(ctx: CliContext): string | undefined {
  const { configPath, loadConfig } = require('../shim/config') as typeof import('../shim/config');
  const file = configPath(ctx.env);
  if (!ctx.env.KATAVOL_CONFIG && !fs.existsSync(file)) return undefined;
  try {
    return loadConfig(ctx.env).volumeRoot;
  } catch (e) {
    ctx.err(`katavol: warning: ignoring the shim config for the volume root: ${(e as Error).message}\n`);
    return undefined;
  }
}

const describe = (i: MountInfo): string => `${i.volumeType} ${i.device}${i.fsType ? `, ${i.fsType}` : ''}`;
/** "pod-a" for a read-write user (or Kata's empty record, which counts as one), "pod-a(ro)" for a read-only one. */
const sandboxLabel = (s: SandboxUse): string => `${s.id}${s.readOnly ? '(ro)' : ''}`;

function add(argv: string[], ctx: CliContext, reg: Registry): number {
  const a = parseArgs(argv, ['volume-path', 'mount-info'], [], USAGE);
  const volumePath = take(a, 'volume-path', 'the volume path', USAGE);
  const json = take(a, 'mount-info', 'the mount info JSON', USAGE);
  noMore(a, USAGE);
  const r = reg.addWithResult(volumePath, json);
  for (const n of r.notes) ctx.err(`katavol: note: ${n}\n`);
  if (r.info.volumeType === 'directvol') {
    // Registering a device the host still uses is allowed (it may be unmounted before a pod starts);
    // using it is not, so say now what Create will refuse.
    const { conflictingUses, describeUses, fixOf, hostUsesOf } = require('../volumes/in-use') as typeof import('../volumes/in-use');
    const ro = r.info.options.includes('ro');
    const uses = conflictingUses(hostUsesOf(volumePath, r.info.device), ro);
    if (uses.length) ctx.err(`katavol: warning: ${describeUses(r.info.device, uses, ro)}; containers will be refused this volume${ro ? '' : ' read-write'} until then: ${fixOf(uses, ro)}\n`);
  }
  const verb = { added: 'added', replaced: 'replaced', repaired: 'completed the incomplete entry of', unchanged: 'unchanged:' }[r.action];
  ctx.out(`${verb} direct volume ${volumePath} (${describe(r.info)}) in ${r.file}\n`);
  return EXIT_OK;
}

function remove(argv: string[], ctx: CliContext, reg: Registry): number {
  const a = parseArgs(argv, ['volume-path'], [], USAGE);
  const volumePath = take(a, 'volume-path', 'the volume path', USAGE);
  noMore(a, USAGE);
  const users = reg.isRegistered(volumePath) ? reg.sandboxesOf(volumePath) : [];
  const dir = reg.entryDir(volumePath);
  reg.remove(volumePath);
  if (users.length) ctx.err(`katavol: note: it was recorded as used by sandbox ${users.map(sandboxLabel).join(', ')}\n`);
  ctx.out(`removed direct volume ${volumePath} (${dir})\n`);
  return EXIT_OK;
}

function stats(argv: string[], ctx: CliContext, reg: Registry): number {
  const a = parseArgs(argv, ['volume-path'], ['json'], USAGE);
  const volumePath = take(a, 'volume-path', 'the volume path', USAGE);
  noMore(a, USAGE);
  const { volumeStats } = require('../volumes/stats') as typeof import('../volumes/stats');
  ctx.out(JSON.stringify(volumeStats(reg, volumePath), null, 2) + '\n');
  return EXIT_OK;
}

function resize(argv: string[], ctx: CliContext, reg: Registry): number {
  const a = parseArgs(argv, ['volume-path', 'size'], [], USAGE);
  const volumePath = take(a, 'volume-path', 'the volume path', USAGE);
  const sizeText = take(a, 'size', 'the new size', USAGE);
  noMore(a, USAGE);
  const { parseSize, resizeVolume } = require('../volumes/resize') as typeof import('../volumes/resize');
  const size = parseSize(sizeText);
  if (size === undefined) throw new UsageError(`size ${JSON.stringify(sizeText)} is not a byte count (e.g. 1073741824, 10G, 512MiB)`, USAGE);
  ctx.out(resizeVolume(reg, volumePath, size).summary + '\n');
  return EXIT_OK;
}

function list(argv: string[], ctx: CliContext, reg: Registry): number {
  const a = parseArgs(argv, [], ['json'], USAGE);
  noMore(a, USAGE);
  const entries = reg.list();
  if (a.switches.has('json')) {
    const rows = entries.map((e) => ({
      volumePath: e.volumePath,
      directory: e.dir,
      ...(e.info ? { mountInfo: JSON.parse(serializeMountInfo(e.info)) as unknown } : {}),
      sandboxes: e.info ? reg.sandboxesOf(e.volumePath) : [],
      ...(e.error ? { error: e.error } : {}),
    }));
    ctx.out(JSON.stringify(rows, null, 2) + '\n');
    return EXIT_OK;
  }
  if (!entries.length) {
    ctx.out(`no direct volumes registered in ${reg.root}\n`);
    return EXIT_OK;
  }
  const table = [['VOLUME PATH', 'TYPE', 'DEVICE', 'FSTYPE', 'SANDBOXES']];
  for (const e of entries) {
    const shown = e.volumePath || `(${e.name})`;
    if (e.info) table.push([shown, e.info.volumeType, e.info.device, e.info.fsType || '-', reg.sandboxesOf(e.volumePath).map(sandboxLabel).join(',') || '-']);
    else table.push([shown, 'BROKEN', e.error ?? '', '', '']);
  }
  const widths = table[0].map((_, c) => Math.max(...table.map((r) => (r[1] === 'BROKEN' && c >= 2 ? 0 : r[c].length))));
  for (const row of table) {
    ctx.out(row.map((cell, c) => (c === row.length - 1 || (row[1] === 'BROKEN' && c === 2) ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd() + '\n');
  }
  return EXIT_OK;
}

function inspect(argv: string[], ctx: CliContext, reg: Registry): number {
  const a = parseArgs(argv, ['volume-path'], ['json'], USAGE);
  const volumePath = take(a, 'volume-path', 'the volume path', USAGE);
  noMore(a, USAGE);
  const r = reg.read(volumePath);
  const out = {
    volumePath,
    directory: r.dir,
    file: r.file,
    mountInfo: JSON.parse(serializeMountInfo(r.info)) as unknown,
    canonical: r.canonical,
    ...(r.canonical ? {} : { stored: r.raw }),
    sandboxes: reg.sandboxesOf(volumePath),
  };
  ctx.out(JSON.stringify(out, null, 2) + '\n');
  return EXIT_OK;
}
