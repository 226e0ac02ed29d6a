// Go `flag`-style command line of a containerd shim v2 binary (`-x value`, `--x value`, `-x=value`).
// containerd passes: -namespace NS -address ADDR -publish-binary BIN -id ID [-bundle B] [-debug] ACTION.
import { messageOf } from '../volumes/types';

export interface ShimArgs {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  socket: string;
  debug: boolean;
  version: boolean;
  info: boolean;
  /** -h / -help: print the usage and exit 0. */
  help: boolean;
  /** start | delete | '' (daemon) | anything else (also the daemon, as in Go shims). */
  action: string;
  /** The exact argv, passed through to the downstream verbatim. */
  argv: string[];
}

const STRING_FLAGS: Record<string, keyof ShimArgs> = {
  namespace: 'namespace',
  address: 'address',
  'publish-binary': 'publishBinary',
  id: 'id',
  bundle: 'bundle',
  socket: 'socket',
  'debug-socket': 'socket', // accepted for compatibility; unused
};
const BOOL_FLAGS: Record<string, keyof ShimArgs> = {
  debug: 'debug',
  v: 'version',
  version: 'version',
  info: 'info',
  h: 'help',
  help: 'help',
};

/** The binary's name, which starts every failure it prints (as Go shims print theirs). */
export const SHIM_NAME = 'containerd-shim-katavol-v2';

/** "<binary>: <error>": what a failed action answers; containerd wraps it into its own error. */
export function failureText(e: unknown): string {
  return `${SHIM_NAME}: ${messageOf(e)}`;
}

/** Actions a shim binary knows; none means "run the daemon" (how start launches it). */
export const ACTIONS = ['start', 'delete'];

export class FlagError extends Error {
  override readonly name = 'FlagError';
}

export const USAGE = `Usage of containerd-shim-katavol-v2:
  -address string        grpc address back to main containerd
  -bundle string         path to the bundle if not workdir
  -debug                 enable debug output in logs
  -h, -help              show this usage and exit
  -id string             id of the task
  -info                  get the runtime info of the downstream shim
  -namespace string      namespace that owns the shim
  -publish-binary string path to publish binary (used for publishing events)
  -socket string         socket path to serve
  -v                     show the shim version and exit
actions: start | delete (flags and no action: run the shim daemon, as start does)
containerd runs this binary; see katavol's README for how to register it as a runtime.
`;

export function parseShimArgs(argv: string[]): ShimArgs {
  const out: ShimArgs = {
    namespace: '', address: '', publishBinary: '', id: '', bundle: '', socket: '',
    debug: false, version: false, info: false, help: false, action: '', argv: argv.slice(),
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (name in BOOL_FLAGS) {
      const v = eq >= 0 ? body.slice(eq + 1) : 'true';
      if (!/^(1|0|t|f|true|false|TRUE|FALSE|True|False)$/.test(v)) {
        throw new FlagError(`invalid boolean value "${v}" for -${name}`);
      }
      (out as unknown as Record<string, unknown>)[BOOL_FLAGS[name]] = /^(1|t|true)$/i.test(v);
    } else if (name in STRING_FLAGS) {
      let v: string;
      if (eq >= 0) v = body.slice(eq + 1);
      else {
        if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
        v = argv[++i];
      }
      (out as unknown as Record<string, unknown>)[STRING_FLAGS[name]] = v;
    } else {
      throw new FlagError(`flag provided but not defined: -${name}`);
    }
  }
  out.action = argv[i] ?? '';
  return out;
}
