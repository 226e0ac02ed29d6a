// Entry point of bin/katavol. Top-level commands come from a table and are loaded on demand, so the
// common paths only load what they use (no winston/protobufjs).
import { type CliContext, type CommandHandler, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './context';

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandHandler>;
}

/**
 * Top-level commands. Another module adds one entry here, e.g.
 *   'install-runtime': { summary: 'install katavol as a containerd runtime', load: async () => (await import('./install')).run },
 * where './install' exports `run(argv: string[], ctx: CliContext): number | Promise<number>`.
 */
export const COMMANDS: Record<string, CommandEntry> = {
  'direct-volume': { summary: 'manage Kata direct volumes (kata-ctl compatible)', load: async () => (await import('./direct-volume')).run },
  csi: { summary: 'run the CSI plugin that provisions and publishes direct volumes for Kubernetes', load: async () => (await import('./csi')).run },
  'install-runtime': { summary: 'register katavol as the io.containerd.kata.v2 runtime (in front of Kata)', load: async () => (await import('./install')).run },
  'uninstall-runtime': { summary: 'undo install-runtime exactly (and stop the warm shim daemons)', load: async () => (await import('./install')).runUninstall },
  config: { summary: 'config check [FILE]: check the shim config as the shim reads it', load: async () => (await import('./config-check')).run },
  daemons: { summary: 'list the shim daemons: warm (pre-booted) and serving (one per pod)', load: async () => (await import('./daemons')).run },
};

/** package.json's version (the CLI and the shim are released together). */
export function version(): string {
  try {
    return (require('../../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function usage(): string {
  const names = Object.keys(COMMANDS);
  const w = Math.max(...names.map((n) => n.length));
  return `usage: katavol <command> [arguments]   (katavol --version: the version)\n\ncommands:\n${names.map((n) => `  ${n.padEnd(w)}  ${COMMANDS[n].summary}`).join('\n')}\n\nRun "katavol <command> --help" for details.`;
}

/**
 * Errors whose text is written for the user (what is wrong, the volume or file, the fix), by class name:
 * the commands that throw them are loaded on demand, so their classes are not imported here.
 */
const USER_ERRORS = new Set(['VolumeError', 'InstallError', 'ConfigError']);

/** What a failed command prints after "katavol: ": a user error's own text; anything else is a bug, with its stack. */
function failureText(e: unknown): string {
  if (e instanceof Error && USER_ERRORS.has(e.name)) return e.message;
  return `unexpected error: ${(e instanceof Error ? e.stack : undefined) ?? String(e)}`;
}

/** Runs one command line and returns the exit status; errors are printed here, the one place, never thrown. */
export async function runCli(argv: string[], ctx: CliContext): Promise<number> {
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
      ctx.out(usage() + '\n');
      return cmd === undefined ? EXIT_USAGE : EXIT_OK;
    }
    if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
      ctx.out(`katavol ${version()}\n`);
      return EXIT_OK;
    }
    const entry = Object.prototype.hasOwnProperty.call(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
    if (!entry) {
      const { closest } = require('../volumes/fstype') as typeof import('../volumes/fstype');
      // kata-ctl users type the subcommand without "direct-volume" (katavol add ...).
      const subs = ['add', 'remove', 'stats', 'resize', 'list', 'inspect'];
      const sub = closest(cmd, subs);
      const meant = closest(cmd, Object.keys(COMMANDS)) ?? (sub ? `direct-volume ${sub}` : undefined);
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}${meant ? `; did you mean "katavol ${meant}"?` : ''}`, usage());
    }
    return await (await entry.load())(rest, ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      ctx.err(`katavol: ${e.message}\n${e.usage ? `\n${e.usage}\n` : ''}`);
      return EXIT_USAGE;
    }
    ctx.err(`katavol: ${failureText(e)}\n`);
    return EXIT_FAILURE;
  }
}

export function main(argv: string[]): void {
  const ctx: CliContext = {
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
    env: process.env,
  };
  // A closed pipe (katavol ... | head) is not an error worth a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
  });
  void runCli(argv, ctx).then((code) => {
    process.exitCode = code;
  });
}
