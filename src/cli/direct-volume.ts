// `katavol direct-volume ...`: kata-ctl's subcommands (add, remove, stats, resize) with its positional
// syntax and the Go runtime's flags, plus list and inspect. Success prints one line (Kata prints nothing).
import * as fs from 'fs';
import { type CliContext, EXIT_OK, EXIT_USAGE, UsageError } from './context';
import { noMore, parseArgs, take } from './args';
import { KATA_VOLUME_ROOT, Registry, VOLUME_ROOT_ENV, volumeRootInEffect, type SandboxUse } from '../volumes/registry';
import { closest } from '../volumes/fstype';
import { serializeMountInfo } from '../volumes/mountinfo';
import { type MountInfo, messageOf } from '../volumes/types';

const COMMANDS_TEXT = `commands (kata-ctl syntax; the kata-runtime flags in brackets work too):
  add <volume-path> '<mount-info-json>'   [--volume-path P --mount-info J]   register or replace a volume
  remove <volume-path>                     [--volume-path P]                  unregister a volume
  stats <volume-path>                      [--volume-path P]                  host-side size and usage, as JSON
  resize <volume-path> <size>              [--volume-path P --size N]         grow an image-file volume (bytes or 10G, 512M, ...)
  list [--json]                                                               every registered volume
  inspect <volume-path>                                                       stored mountInfo, directory, sandboxes (JSON)

Run "katavol direct-volume <command> --help" for its arguments (add --help: the mountInfo fields).`;

const USAGE = `usage: katavol direct-volume <command> [arguments]\n\n${COMMANDS_TEXT}`;

const MOUNT_INFO_REFERENCE = `mount info: one JSON object (single-quote it in the shell)
  "volume-type"  required  directvol (raw image file or block device), spdkvol (SPDK vhost-user socket,
                           also as spdk://PATH), vfiovol (PCI address BB:DD.F / DDDD:BB:DD.F, or /dev/vfio/N),
                           spoolvol (accepted as Kata does; Dragonball cannot use it)
  "device"       required  directvol: absolute path of an existing image file or block device
  "fstype"       required  the filesystem on the device, as Linux names it (ext4, xfs, btrfs, ...);
                           a directvol device holding another filesystem is refused
  "metadata"     optional  object of string values, e.g. {"num_queues":"4","queue_size":"128"} (spdkvol),
                           {"fsGroup":"1000"}; the legacy form "metadata":"{}" is accepted
  "options"      optional  list of mount options, e.g. ["ro"] or ["noatime","discard"]
  (legacy keys volume_type and fs_type are read and stored as volume-type and fstype)

examples:
  katavol direct-volume add /kubelet/vol1 '{"volume-type":"directvol","device":"/srv/vol1.img","fstype":"ext4"}'
  katavol direct-volume add /kubelet/ro1 '{"volume-type":"directvol","device":"/dev/sdb","fstype":"xfs","options":["ro"]}'
  katavol direct-volume add /kubelet/spdk1 '{"volume-type":"spdkvol","device":"/var/tmp/vhost.0","fstype":"ext4","metadata":{"num_queues":"4"}}'
  katavol direct-volume add /kubelet/gpu1 '{"volume-type":"vfiovol","device":"0000:3b:00.0","fstype":"ext4"}'`;

const SUB_HELP: Record<string, string> = {
  add: `usage: katavol direct-volume add [--force] <volume-path> '<mount-info-json>'
       katavol direct-volume add [--force] --volume-path P --mount-info J

Registers the volume: <volume-path> is the path containers mount it from (the OCI mount source, matched
byte for byte), the JSON says what it is. Adding it again with the same JSON prints "unchanged:";
with other JSON it replaces the entry, which is refused while a sandbox is recorded as using the
volume (--force overrides, e.g. for a stale record).

${MOUNT_INFO_REFERENCE}`,
  remove: `usage: katavol direct-volume remove [--force] <volume-path>   [--volume-path P]

Unregisters the volume. Refused while a sandbox is recorded as using it (the message names them);
--force removes it anyway (for records left by a sandbox that is gone).`,
  stats: `usage: katavol direct-volume stats <volume-path>   [--volume-path P]

Prints host-side facts as JSON: device kind and size, loop devices, mounts in any mount namespace,
filesystem usage (statfs when mounted, the ext2/3/4 superblock otherwise), sandboxes.`,
  resize: `usage: katavol direct-volume resize <volume-path> <size>   [--volume-path P --size N]

Grows a directvol image file to <size> (bytes, or K/M/G/T/P with optional i/iB: 10G, 512MiB) and its
ext2/3/4 filesystem: offline, or online when a runc-backend container has it mounted (that needs
CAP_SYS_RESOURCE). Never shrinks. Every precondition is checked first; a refusal changes nothing.`,
  list: `usage: katavol direct-volume list [--json]

One row per registry entry: volume path, type, device, fstype, options, state (ok; MISSING: the device is
not on this host; BROKEN: Kata cannot use the entry, reason below the table) and sandboxes ((ro):
read-only use). --json prints everything, including each entry's mountInfo.`,
  inspect: `usage: katavol direct-volume inspect <volume-path>

Prints JSON: the stored mountInfo as Kata reads it, its directory and file, whether the bytes are canonical
(if not, what is stored), and the sandboxes recorded as using it.`,
};

type Sub = (argv: string[], ctx: CliContext, reg: Registry) => number;

const SUBCOMMANDS: Record<string, Sub> = { add, remove, stats, resize, list, inspect };

/** The registry root for this invocation and where it came from (env, then the shim config's volumeRoot, then Kata's). */
/** The registry root for this invocation (also `katavol csi`'s): env, then the shim config's volumeRoot, then Kata's root. */
export function volumeRootFor(ctx: CliContext): string {
  return rootInEffect(ctx).root;
}

function rootInEffect(ctx: CliContext): { root: string; origin: string } {
  return volumeRootInEffect(ctx.env, ctx.env[VOLUME_ROOT_ENV] ? undefined : configuredRoot(ctx));
}

const rootLine = (ctx: CliContext): string => {
  const r = rootInEffect(ctx);
  return `Registry root in effect: ${r.root} (from ${r.origin}; $${VOLUME_ROOT_ENV} > "volumeRoot" of the shim config > ${KATA_VOLUME_ROOT}).`;
};

export function run(argv: string[], ctx: CliContext): number {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h') {
    ctx.out(`${USAGE}\n\n${rootLine(ctx)}\n`);
    return sub === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const handler = Object.prototype.hasOwnProperty.call(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (!handler) {
    const meant = closest(sub, Object.keys(SUBCOMMANDS));
    throw new UsageError(`unknown direct-volume command ${JSON.stringify(sub)}${meant ? `; did you mean "${meant}"?` : ''}`, USAGE);
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    ctx.out(`${SUB_HELP[sub]}\n\n${rootLine(ctx)}\n`);
    return EXIT_OK;
  }
  // Same rule as the shim, so one config serves both; with the environment of this invocation.
  return handler(rest, ctx, new Registry(rootInEffect(ctx).root));
}

function configuredRoot(ctx: CliContext): { root?: string; file: string } | undefined {
  const { configPath, loadConfig } = require('../shim/config') as typeof import('../shim/config');
  const file = configPath(ctx.env);
  if (!ctx.env.KATAVOL_CONFIG && !fs.existsSync(file)) return undefined;
  try {
    return { root: loadConfig(ctx.env).volumeRoot, file };
  } catch (e) {
    ctx.err(`katavol: warning: ignoring the shim config for the volume root: ${messageOf(e)}\n`);
    return undefined;
  }
}

const describe = (i: MountInfo): string => `${i.volumeType} ${i.device}${i.fsType ? `, ${i.fsType}` : ''}`;
/** "pod-a" for a read-write user (or Kata's empty record, which counts as one), "pod-a(ro)" for a read-only one. */
const sandboxLabel = (s: SandboxUse): string => `${s.id}${s.readOnly ? '(ro)' : ''}`;

function add(argv: string[], ctx: CliContext, reg: Registry): number {
  const a = parseArgs(argv, ['volume-path', 'mount-info'], ['force'], USAGE);
  const volumePath = take(a, 'volume-path', 'the volume path', USAGE);
  const json = take(a, 'mount-info', 'the mount info JSON', USAGE);
  noMore(a, USAGE);
  if (/^\s*\{/.test(volumePath) && !/^\s*\{/.test(json)) {
    throw new UsageError(`the arguments look swapped: ${JSON.stringify(volumePath.slice(0, 40))} is JSON and ${JSON.stringify(json)} is not; the volume path comes first`, `usage: katavol direct-volume add <volume-path> '<mount-info-json>'`);
  }
  const r = reg.addWithResult(volumePath, json, { force: a.switches.has('force') });
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
  const a = parseArgs(argv, ['volume-path'], ['force'], USAGE);
  const volumePath = take(a, 'volume-path', 'the volume path', USAGE);
  noMore(a, USAGE);
  const dir = reg.entryDir(volumePath);
  const users = reg.remove(volumePath, { force: a.switches.has('force') });
  if (users.length) ctx.err(`katavol: note: --force: removed it although it was recorded as used by sandbox ${users.map(sandboxLabel).join(', ')}\n`);
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

/** Where a volume's device should be on this host; undefined when it cannot be told from a path. */
function devicePresent(info: MountInfo): boolean {
  const { spdkSocketPath, isPciAddress } = require('../volumes/device') as typeof import('../volumes/device');
  switch (info.volumeType) {
    case 'directvol': return fs.existsSync(info.device);
    case 'vfiovol': return fs.existsSync(isPciAddress(info.device) ? `/sys/bus/pci/devices/${/^[0-9a-f]{4}:/i.test(info.device) ? '' : '0000:'}${info.device.toLowerCase()}` : info.device);
    default: return fs.existsSync(spdkSocketPath(info.device));
  }
}

function list(argv: string[], ctx: CliContext, reg: Registry): number {
  const a = parseArgs(argv, [], ['json'], USAGE);
  noMore(a, USAGE);
  const entries = reg.list();
  const stateOf = (e: (typeof entries)[number]): 'ok' | 'MISSING' | 'BROKEN' => (!e.info ? 'BROKEN' : devicePresent(e.info) ? 'ok' : 'MISSING');
  if (a.switches.has('json')) {
    const rows = entries.map((e) => ({
      volumePath: e.volumePath,
      directory: e.dir,
      ...(e.info ? { mountInfo: JSON.parse(serializeMountInfo(e.info)) as unknown } : {}),
      state: stateOf(e),
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
  // Every cell is short; reasons go below the table, one line each, so the columns stay aligned.
  const table = [['VOLUME PATH', 'TYPE', 'DEVICE', 'FSTYPE', 'OPTIONS', 'STATE', 'SANDBOXES']];
  const notes: string[] = [];
  for (const e of entries) {
    const shown = e.volumePath || `(${e.name})`;
    const state = stateOf(e);
    if (e.info) {
      table.push([shown, e.info.volumeType, e.info.device, e.info.fsType || '-', e.info.options.join(',') || '-', state, reg.sandboxesOf(e.volumePath).map(sandboxLabel).join(',') || '-']);
      if (state === 'MISSING') notes.push(`${shown}: MISSING: device ${e.info.device} is not on this host; containers using the volume will be refused`);
    } else {
      table.push([shown, '-', '-', '-', '-', state, '-']);
      notes.push(`${shown}: BROKEN: ${e.error ?? ''}`);
    }
  }
  const widths = table[0].map((_, c) => Math.max(...table.map((r) => r[c].length)));
  for (const row of table) ctx.out(row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd() + '\n');
  if (notes.length) ctx.out(`\n${notes.join('\n')}\n`);
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
