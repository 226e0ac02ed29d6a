// Startup section: process wall time of katavol's entry points next to a bare `node -e 0` (the floor a
// Node shim pays on containerd's critical path for every start and delete), runs interleaved.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fmt, median, printTable, type Section } from './section';

const RUNS = 20;

interface Subject { label: string; cmd: string; args: string[] }

function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'bin', 'katavol')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`cannot find the katavol repo root (with bin/katavol) above ${__dirname}`);
}

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  return undefined;
}

/** Why a subject cannot be measured (missing or failing), or undefined when it runs cleanly. */
function unusable(s: Subject): string | undefined {
  const r = spawnSync(s.cmd, s.args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  if (r.error) return r.error.message;
  if (r.status !== 0) {
    // Node prints a source location first; the "Error: ..." line says what went wrong.
    const lines = r.stderr.toString().split('\n').map((l) => l.trim()).filter(Boolean);
    return `exit ${r.signal ?? r.status}: ${lines.find((l) => /Error\b/.test(l)) ?? lines[0] ?? 'no output'}`;
  }
  return undefined;
}

function timeOnce(s: Subject): number {
  const t0 = process.hrtime.bigint();
  spawnSync(s.cmd, s.args, { stdio: 'ignore' });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function run(): Promise<void> {
  const root = repoRoot();
  const subjects: Subject[] = [
    { label: 'node -e 0', cmd: process.execPath, args: ['-e', '0'] },
    { label: 'containerd-shim-katavol-v2 -v', cmd: path.join(root, 'bin', 'containerd-shim-katavol-v2'), args: ['-v'] },
    { label: 'katavol --help', cmd: path.join(root, 'bin', 'katavol'), args: ['--help'] },
  ];
  const runc = which('containerd-shim-runc-v2');
  if (runc) subjects.push({ label: 'containerd-shim-runc-v2 -v (Go, reference)', cmd: runc, args: ['-v'] });

  const usable: Subject[] = [];
  for (const s of subjects) {
    const why = unusable(s);
    if (why) process.stdout.write(`skipped ${s.label}: ${why}\n`);
    else usable.push(s);
  }
  const times = new Map<Subject, number[]>(usable.map((s) => [s, []]));
  for (let i = 0; i < RUNS; i++) for (const s of usable) times.get(s)!.push(timeOnce(s));

  const nodeMedian = usable[0]?.label === 'node -e 0' ? median(times.get(usable[0])!) : undefined;
  process.stdout.write(`wall time of ${RUNS} runs each, interleaved\n`);
  printTable(['command', 'median ms', 'min ms', 'max ms', 'vs node -e 0'], usable.map((s) => {
    const t = times.get(s)!;
    const m = median(t);
    return [s.label, fmt(m, 1), fmt(Math.min(...t), 1), fmt(Math.max(...t), 1),
      nodeMedian === undefined ? 'n/a' : `${m - nodeMedian >= 0 ? '+' : ''}${fmt(m - nodeMedian, 1)} ms`];
  }));
}

export const section: Section = { name: 'startup', title: 'process start-up wall time', run };
