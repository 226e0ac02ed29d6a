// Entry point of containerd-shim-katavol-v2: one table of actions and one place (`finish`) that writes
// the answer and exits. Each action loads only what it needs when it runs: `start` and `delete` are on
// containerd's critical path for every container.
import * as fs from 'fs';
import { ACTIONS, parseShimArgs, FlagError, USAGE, SHIM_NAME, failureText, type ShimArgs } from './args';
import { WARM_FLAG } from './pool';

export const VERSION = '0.1.0';

/** What an action is run with: its flags, containerd's argv, this binary's path and the environment. */
interface Invocation {
  args: ShimArgs;
  argv: string[];
  self: string;
  env: NodeJS.ProcessEnv;
}

/**
 * How an action ends: what it answers (stdout, stderr) and the exit status; or 'serving', when this
 * process goes on as a daemon and answers nothing more.
 */
type Outcome = 'serving' | {
  stdout?: string | Buffer;
  stderr?: string | Buffer;
  status: number;
  /** The launcher's answer file (KATAVOL_START_ANSWER): the answer goes there instead of stdout. */
  answerFile?: string;
  /** After answering, this process goes on as the daemon (inline start) instead of exiting. */
  thenServe?: () => Promise<void>;
};

type Action = (inv: Invocation) => Promise<Outcome>;

const TABLE: Record<string, Action> = {
  help: () => Promise.resolve({ stdout: USAGE, status: 0 }),
  version: () => Promise.resolve({
    stdout: `${SHIM_NAME}:\n  Version:  ${VERSION}\n  Runtime:  katavol (containerd shim v2 proxy for Kata direct volumes)\n`,
    status: 0,
  }),
  info: runInfo,
  start: runStart,
  delete: async ({ args }) => {
    const r = await (require('./delete') as typeof import('./delete')).del(args);
    return { stdout: r.stdout, stderr: r.stderr, status: r.status };
  },
  // Flags and no action: the long-running daemon (how a detached start launches it).
  daemon: async ({ args }) => {
    await (require('./daemon') as typeof import('./daemon')).runDaemon(args);
    return 'serving';
  },
  // A warm daemon booted ahead of the next start (src/shim/warm.ts); it answers through its hand-off.
  warm: async ({ self }) => {
    await (require('./warm') as typeof import('./warm')).runWarm(self);
    return 'serving';
  },
};

export function main(argv: string[], env: NodeJS.ProcessEnv = process.env, self = process.argv[1]): void {
  void run(argv, env, self).then(finish).catch((e: unknown) => finish(failed(e)));
}

async function run(argv: string[], env: NodeJS.ProcessEnv, self: string): Promise<Outcome> {
  const [name, args] = chooseAction(argv);
  return TABLE[name]({ args, argv, self, env });
}

/** The table entry argv asks for, with its parsed flags; throws FlagError for a usage error. */
function chooseAction(argv: string[]): [string, ShimArgs] {
  if (argv[0] === WARM_FLAG) return ['warm', parseShimArgs([])];
  const args = parseShimArgs(argv);
  // Run by hand without arguments, or with an action containerd never passes: not a daemon.
  if (argv.length === 0) throw new FlagError('no arguments: containerd runs this binary with flags and an action');
  if (args.help) return ['help', args];
  if (args.version) return ['version', args];
  if (args.info) return ['info', args];
  if (!args.action) return ['daemon', args];
  if (!ACTIONS.includes(args.action)) throw new FlagError(`unknown action "${args.action}" (actions: ${ACTIONS.join(', ')})`);
  return [args.action, args];
}

/** A usage error prints the usage and exits 2; any other failure prints "<binary>: <error>" and exits 1. */
function failed(e: unknown): Outcome {
  if (e instanceof FlagError) return { stderr: `${e.message}\n${USAGE}`, status: 2 };
  return { stderr: failureText(e), status: 1 };
}

/** The one place that writes an action's answer and ends the process (or lets it serve). */
function finish(o: Outcome): void {
  if (o === 'serving') return;
  // Through the launcher the answer goes to its file: it may hold any byte (the protobuf form has
  // newlines and NULs), so it is never parsed by the shell.
  if (o.answerFile) fs.writeFileSync(o.answerFile, o.stdout ?? '');
  const stdout = o.answerFile ? '' : o.stdout ?? '';
  if (o.thenServe) {
    // Inline start: answer, hand stdio back (the launcher waits for EOF), become the daemon.
    if (stdout.length) fs.writeSync(1, Buffer.isBuffer(stdout) ? stdout : Buffer.from(stdout));
    detachStdio();
    o.thenServe().catch((e: unknown) => finish(failed(e)));
    return;
  }
  // Exit once written, without closing a bound socket (a detached daemon has it) and before any stray output.
  const exit = (): never => process.exit(o.status);
  const answer = (): unknown => (stdout.length ? process.stdout.write(stdout, exit) : exit());
  if (o.stderr?.length) process.stderr.write(o.stderr, answer);
  else answer();
}

async function runStart({ args, self, env }: Invocation): Promise<Outcome> {
  const { start, containerdEnv } = require('./start') as typeof import('./start');
  const r = await start(args, self, env.KATAVOL_START_INLINE === '1');
  const answer = { stdout: r.answer, status: 0, answerFile: env.KATAVOL_START_ANSWER || undefined };
  const bound = r.serve;
  if (!bound) return answer;
  return {
    ...answer,
    thenServe: async () => {
      const served = (require('./daemon') as typeof import('./daemon')).runDaemon(args, bound);
      // The pool was empty (or is off): boot warm daemons for the next starts, niced, now that
      // containerd has its answer.
      setImmediate(() => {
        try {
          const { refillPool } = require('./pool') as typeof import('./pool');
          const { loadConfig } = require('./config') as typeof import('./config');
          refillPool(loadConfig(env), containerdEnv());
        } catch { /* the next start tries again */ }
      });
      await served;
    },
  };
}

/** `-info` (containerd 2.2+): the downstream's RuntimeInfo is the answer. */
async function runInfo({ argv, env }: Invocation): Promise<Outcome> {
  const { loadConfig } = await import('./config');
  const { spawnSync } = await import('child_process');
  const cfg = loadConfig(env);
  let input: Buffer = Buffer.alloc(0);
  try { input = fs.readFileSync(0); } catch { /* no stdin */ }
  const r = spawnSync(cfg.downstream, argv, { input, maxBuffer: 1 << 20 });
  if (r.error) throw new Error(`-info: cannot run the downstream shim ${cfg.downstream} (config ${cfg.file}): ${r.error.message}`, { cause: r.error });
  if (r.status !== 0 && /flag provided but not defined: -info/.test(r.stderr.toString())) {
    // Its usage text would read as ours: say what happened instead.
    throw new Error(`-info: the downstream shim ${cfg.downstream} does not support -info (it came with containerd 2.2's shims); katavol answers -info with the downstream's runtime info, so there is none to give`);
  }
  return { stdout: r.stdout, stderr: r.stderr, status: r.status ?? 1 };
}

/** Points fds 0-2 at /dev/null (close + open reuses the lowest free fd), releasing containerd's pipes. */
function detachStdio(): void {
  for (const fd of [0, 1, 2]) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.openSync('/dev/null', fd === 0 ? 'r' : 'w');
  }
}
