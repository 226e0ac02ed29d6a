// What a benchmark section is, plus the table printer every section uses.

export interface Section {
  name: string;
  /** One line shown in the section heading. */
  title: string;
  /** Prints its own figures; throws to report a failure (the runner goes on with the next section). */
  run(): Promise<void>;
}

/** Seconds each measured cell runs for; BENCH_SECONDS overrides (e.g. 0.5 for a quick look). */
export function cellSeconds(): number {
  const v = Number(process.env.BENCH_SECONDS ?? '3');
  return Number.isFinite(v) && v > 0 ? v : 3;
}

/** Print rows as a left-aligned text table under a header row. */
export function printTable(header: string[], rows: Array<Array<string | number>>): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  process.stdout.write(`${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of cells.slice(1)) process.stdout.write(`${line(r)}\n`);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Format a number with a fixed number of significant-looking digits for tables. */
export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
