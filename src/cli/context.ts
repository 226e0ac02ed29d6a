// What a CLI command gets: output sinks and the environment (tests pass their own).

export interface CliContext {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

/** Returns the exit status. */
export type CommandHandler = (argv: string[], ctx: CliContext) => number | Promise<number>;

/** Wrong command line: printed with a usage hint, exit status 2 (as clap/urfave do). */
export class UsageError extends Error {
  constructor(message: string, readonly usage?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
