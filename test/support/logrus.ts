// Reads logrus text lines (time="…" level=info msg="…" key=value …), the format of containerd's log.
import * as fs from 'fs';

/** The fields of one logrus text line, quoted values unquoted; undefined when the line is not one. */
export function parseLogrus(line: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  const re = /([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)/y;
  let m: RegExpExecArray | null;
  while (re.lastIndex < line.length && (m = re.exec(line))) {
    out[m[1]] = m[2].startsWith('"') ? (JSON.parse(m[2]) as string) : m[2];
  }
  return re.lastIndex === line.length && out.time !== undefined && out.level !== undefined ? out : undefined;
}

/** katavol's lines in a containerd log file. */
export function katavolLogLines(file: string): Array<Record<string, string>> {
  return fs.readFileSync(file, 'utf8').split('\n').map(parseLogrus).filter((l): l is Record<string, string> => l?.component === 'katavol-shim');
}
