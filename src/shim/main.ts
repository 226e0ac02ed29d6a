// Entry point of containerd-shim-katavol-v2. Each action loads only what it needs: `start` and
// `delete` run on containerd's critical path for every container.
import * as fs from 'fs';
import { ACTIONS, parseShimArgs, FlagError, USAGE, failureText } from './args';
import { WARM_FLAG } from './pool';

export const VERSION = '0.1.0';

export function main(argv: string[]): void {
  if (argv[0] === WARM_FLAG) {
    void (require('./warm') as typeof import('./warm')).runWarm(process.argv[1]);
    return;
  }
  let args;
  try {
    args = parseShimArgs(argv);
    // Run by hand without arguments, or with an action containerd never passes: not a daemon.
    if (argv.length === 0) throw new FlagError('no arguments: containerd runs this binary with flags and an action');
    if (args.action && !ACTIONS.includes(args.action) && !args.help && !args.version && !args.info) {
      throw new FlagError(`unknown action "${args.action}" (actions: ${ACTIONS.join(', ')})`);
    }
  } catch (e) {
    if (e instanceof FlagError) {
      process.stderr.write(`${e.message}\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    throw e;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return;
  }
  const self = process.argv[1];
  if (args.version) {
    process.stdout.write(`containerd-shim-katavol-v2:\n  Version:  ${VERSION}\n  Runtime:  katavol (containerd shim v2 proxy for Kata direct volumes)\n`);
    return;
  }
  if (args.info) {
    void runInfo(argv);
    return;
  }
  switch (args.action) {
    case 'start': {
      const inline = process.env.KATAVOL_START_INLINE === '1';
      (require('./start') as typeof import('./start')).start(args, self, inline).then(
        (r) => {
          // Through the launcher the answer goes to its file: it may hold any byte (the protobuf form
          // has newlines and NULs), so it is never parsed by the shell.
          const answerFile = process.env.KATAVOL_START_ANSWER;
          if (!r.serve) {
            if (answerFile) fs.writeFileSync(answerFile, r.answer);
            // Exit without closing the bound socket (the daemon has it) and before any stray output.
            process.stdout.write(answerFile ? '' : r.answer, () => process.exit(0));
            return;
          }
          // Inline: answer, hand stdio back (the launcher waits for EOF), become the daemon.
          if (answerFile) fs.writeFileSync(answerFile, r.answer);
          else fs.writeSync(1, r.answer);
          detachStdio();
          (require('./daemon') as typeof import('./daemon')).runDaemon(args, r.serve).catch((e: unknown) => fail(e));
          // The pool was empty (or is off): boot warm daemons for the next starts, niced, now that
          // containerd has its answer.
          setImmediate(() => {
            try {
              const { refillPool } = require('./pool') as typeof import('./pool');
              const { loadConfig } = require('./config') as typeof import('./config');
              refillPool(loadConfig(), (require('./start') as typeof import('./start')).containerdEnv());
            } catch { /* the next start tries again */ }
          });
        },
        (e: unknown) => fail(e),
      );
      return;
    }
    case 'delete':
      (require('./delete') as typeof import('./delete')).del(args).then(
        (r) => {
          if (r.stderr) process.stderr.write(r.stderr);
          process.stdout.write(r.stdout, () => process.exit(r.status));
        },
        (e: unknown) => fail(e),
      );
      return;
    default:
      (require('./daemon') as typeof import('./daemon')).runDaemon(args).catch((e: unknown) => fail(e));
  }
}

/** `-info` (containerd 2.2+): the downstream's RuntimeInfo is the answer. */
async function runInfo(argv: string[]): Promise<void> {
  const { loadConfig } = await import('./config');
  const { spawnSync } = await import('child_process');
  try {
    const cfg = loadConfig();
    let input: Buffer = Buffer.alloc(0);
    try { input = fs.readFileSync(0); } catch { /* no stdin */ }
    const r = spawnSync(cfg.downstream, argv, { input, maxBuffer: 1 << 20 });
    if (r.error) throw new Error(`-info: cannot run the downstream shim ${cfg.downstream} (config ${cfg.file}): ${r.error.message}`);
    if (r.status !== 0 && /flag provided but not defined: -info/.test(r.stderr.toString())) {
      // Its usage text would read as ours: say what happened instead.
      throw new Error(`-info: the downstream shim ${cfg.downstream} does not support -info (it came with containerd 2.2's shims); katavol answers -info with the downstream's runtime info, so there is none to give`);
    }
    process.stderr.write(r.stderr);
    process.stdout.write(r.stdout, () => process.exit(r.status ?? 1));
  } catch (e) {
    fail(e);
  }
}

/** Points fds 0-2 at /dev/null (close + open reuses the lowest free fd), releasing containerd's pipes. */
function detachStdio(): void {
  for (const fd of [0, 1, 2]) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.openSync('/dev/null', fd === 0 ? 'r' : 'w');
  }
}

function fail(e: unknown): void {
  // Like the Go shim library: "<name>: <err>" on stderr, exit 1 (containerd wraps it into its error).
  process.stderr.write(failureText(e));
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 10).unref();
}
