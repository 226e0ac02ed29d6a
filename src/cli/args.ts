// Command-line parsing for both syntaxes users know: kata-ctl's positional arguments and the Go
// kata-runtime flags (urfave/cli: --name value, --name=value, -name value).
import { UsageError } from './context';

export interface ParsedArgs {
  positionals: string[];
  values: Map<string, string>;
  switches: Set<string>;
}

/** `valueFlags` take a value, `switchFlags` do not; names without dashes. "--" ends flag parsing. */
export function parseArgs(argv: string[], valueFlags: string[], switchFlags: string[], usage: string): ParsedArgs {
  const out: ParsedArgs = { positionals: [], values: new Map(), switches: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    const m = /^--?([A-Za-z][\w-]*)(?:=([\s\S]*))?$/.exec(a);
    if (!m) {
      out.positionals.push(a);
      continue;
    }
    const [, name, inline] = m;
    if (valueFlags.includes(name)) {
      if (out.values.has(name)) throw new UsageError(`--${name} given twice`, usage);
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`, usage);
      out.values.set(name, v);
    } else if (switchFlags.includes(name)) {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`, usage);
      out.switches.add(name);
    } else {
      throw new UsageError(`unknown option ${a}${a.startsWith('-') ? ' (put "--" before a volume path that starts with "-")' : ''}`, usage);
    }
  }
  return out;
}

/** Takes a value from its flag or, failing that, the next positional; both at once is an error. */
export function take(args: ParsedArgs, flag: string, what: string, usage: string): string {
  const f = args.values.get(flag);
  if (f !== undefined) {
    return f;
  }
  const p = args.positionals.shift();
  if (p === undefined) throw new UsageError(`missing ${what}`, usage);
  return p;
}

export function noMore(args: ParsedArgs, usage: string): void {
  if (args.positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`, usage);
}
