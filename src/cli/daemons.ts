// `katavol daemons [--json]`: the shim's daemons on this host, warm (waiting in the pool) and serving
// (one per pod), found under the config's socketDir. `--stop-warm` stops the pool (make uninstall).
import * as fs from 'fs';
import * as path from 'path';
import { EXIT_OK, type CliContext } from './context';
import { noMore, parseArgs } from './args';
import { loadConfig } from '../shim/config';
import { listPool, procStart, stopPool } from '../shim/pool';

const USAGE = `usage: katavol daemons [--json] [--stop-warm]

Lists the katavol shim daemons under the config's socketDir (KATAVOL_CONFIG, default
/etc/katavol/config.json): warm ones waiting for the next container start, and serving ones with
the pod they front (the downstream shim's address and the containers whose bundles name it).
  --json       one JSON array: [{"pid":…,"state":"warm"|"serving","rssBytes":…,"uptimeSeconds":…,"pod":…}]
  --stop-warm  stop every warm daemon (serving ones are left alone) and print their pids`;

export interface DaemonInfo {
  pid: number;
  state: 'warm' | 'serving';
  rssBytes: number;
  uptimeSeconds: number;
  /** Serving only: the address containerd dials. */
  address?: string;
  pod?: { downstreamAddress: string; containers: string[] };
}

const TICKS_PER_SECOND = 100; // USER_HZ, the unit of /proc/<pid>/stat start times on Linux

function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function uptimeSeconds(start: string): number {
  const now = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Math.max(0, Math.round(now - Number(start) / TICKS_PER_SECOND));
}

/** The containers a serving daemon fronts: its bundle's siblings whose katavol.json names its address. */
function podOf(pid: number, address: string): DaemonInfo['pod'] {
  let cwd: string;
  try {
    cwd = fs.readlinkSync(`/proc/${pid}/cwd`).replace(/ \(deleted\)$/, '');
  } catch {
    return undefined;
  }
  const nsDir = path.dirname(cwd);
  const pod = { downstreamAddress: '', containers: [] as string[] };
  let entries: string[] = [];
  try { entries = fs.readdirSync(nsDir); } catch { /* the namespace dir went away */ }
  for (const id of entries.sort()) {
    try {
      const st = JSON.parse(fs.readFileSync(path.join(nsDir, id, 'katavol.json'), 'utf8')) as { address?: string; downstreamAddress?: string };
      if (st.address !== address) continue;
      pod.containers.push(id);
      pod.downstreamAddress ||= st.downstreamAddress ?? '';
    } catch { /* not a katavol bundle */ }
  }
  return pod;
}

export function listDaemons(socketDir: string): DaemonInfo[] {
  const out: DaemonInfo[] = [];
  for (const e of listPool(socketDir)) {
    if (e.kind !== 'warm' || !e.alive || e.claimed) continue;
    out.push({ pid: e.pid, state: 'warm', rssBytes: rssBytes(e.pid), uptimeSeconds: uptimeSeconds(e.start) });
  }
  let names: string[] = [];
  try { names = fs.readdirSync(socketDir); } catch { /* no daemon ever ran */ }
  for (const f of names.filter((x) => x.endsWith('.pid')).sort()) {
    const pid = Number(fs.readFileSync(path.join(socketDir, f), 'utf8').trim());
    const start = procStart(pid);
    if (!start) continue; // a crashed daemon's leftover (delete removes it)
    const address = `unix://${path.join(socketDir, f.replace(/\.pid$/, '.sock'))}`;
    out.push({ pid, state: 'serving', rssBytes: rssBytes(pid), uptimeSeconds: uptimeSeconds(start), address, pod: podOf(pid, address) });
  }
  return out;
}

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    ctx.out(USAGE + '\n');
    return EXIT_OK;
  }
  const a = parseArgs(argv, [], ['json', 'stop-warm'], USAGE);
  noMore(a, USAGE);
  const cfg = loadConfig(ctx.env); // a ConfigError names the file and the fix; runCli prints it
  if (a.switches.has('stop-warm')) {
    const pids = await stopPool(cfg.socketDir);
    ctx.out(a.switches.has('json') ? JSON.stringify(pids) + '\n' : `stopped ${pids.length} warm daemon(s)${pids.length ? `: ${pids.join(' ')}` : ''}\n`);
    return EXIT_OK;
  }
  const ds = listDaemons(cfg.socketDir);
  if (a.switches.has('json')) {
    ctx.out(JSON.stringify(ds) + '\n');
    return EXIT_OK;
  }
  const rows = [['PID', 'STATE', 'RSS', 'UPTIME', 'POD (downstream address: containers)']];
  for (const d of ds) {
    rows.push([String(d.pid), d.state, `${(d.rssBytes / 1048576).toFixed(1)} MiB`, `${d.uptimeSeconds}s`,
      d.pod ? `${d.pod.downstreamAddress || '?'}: ${d.pod.containers.join(',') || '-'}` : '-']);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) ctx.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]))).join('  ') + '\n');
  return EXIT_OK;
}
