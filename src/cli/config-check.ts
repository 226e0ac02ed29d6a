// `katavol config check [FILE]`: runs the shim's own config code on a file (default: $KATAVOL_CONFIG,
// else /etc/katavol/config.json), so a typo surfaces now instead of at the next container start.
import { type CliContext, EXIT_FAILURE, EXIT_OK, UsageError } from './context';
import { noMore, parseArgs } from './args';
import { messageOf } from '../volumes/types';

const USAGE = `usage: katavol config check [FILE]

Checks the shim's JSON config as containerd-shim-katavol-v2 reads it at start: known keys and their
values, the downstream shim (executable, not katavol itself) and the backend's own section (runtimeRs).
FILE defaults to $KATAVOL_CONFIG, else /etc/katavol/config.json. Exit 0 when the shim would accept it.`;

export function run(argv: string[], ctx: CliContext): number {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    ctx.out(USAGE + '\n');
    return sub === undefined ? 2 : EXIT_OK;
  }
  if (sub !== 'check') throw new UsageError(`unknown config command ${JSON.stringify(sub)}${/^che?c?k?/.test(sub) ? '; did you mean "check"?' : ''}`, USAGE);
  if (rest.includes('--help') || rest.includes('-h')) {
    ctx.out(USAGE + '\n');
    return EXIT_OK;
  }
  const a = parseArgs(rest, [], [], USAGE);
  const file = a.positionals.shift();
  noMore(a, USAGE);
  const { checkDownstream, loadConfig } = require('../shim/config') as typeof import('../shim/config');
  const { createBackend } = require('../backends') as typeof import('../backends');
  const { volumeRootInEffect } = require('../volumes/registry') as typeof import('../volumes/registry');
  const env = file ? { ...ctx.env, KATAVOL_CONFIG: file } : ctx.env;
  let cfg;
  try {
    cfg = loadConfig(env);
    checkDownstream(cfg, require.resolve('../shim/bin'));
    const root = volumeRootInEffect(env, { root: cfg.volumeRoot, file: cfg.file });
    createBackend(cfg.backend, { config: cfg, volumeRoot: root.root });
    ctx.out(`config ${cfg.file}: ok (backend ${cfg.backend}, downstream ${cfg.downstream}, socketDir ${cfg.socketDir}, volume root ${root.root} from ${root.origin}, log ${cfg.logLevel ?? 'info'} ${cfg.logFormat})\n`);
    return EXIT_OK;
  } catch (e) {
    const msg = messageOf(e);
    ctx.err(`${msg.startsWith('katavol') ? msg : `katavol: ${msg}`}\n`);
    return EXIT_FAILURE;
  }
}
