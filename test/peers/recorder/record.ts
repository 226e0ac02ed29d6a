// What the recording downstream shim writes, and how tests read it back. One directory per test run
// (env KATAVOL_RECORDER_DIR, which containerd and katavol pass through to shims): calls.jsonl holds one
// JSON line per binary action or TTRPC call, configs/ the bundle's config.json as seen at each Create.
import * as fs from 'fs';
import * as path from 'path';

export const RECORDER_DIR_ENV = 'KATAVOL_RECORDER_DIR';
/** The launcher a katavol config names as `downstream` (runs dist/test/peers/recorder/main.js). */
export const RECORDER = path.resolve(__dirname, '..', '..', '..', '..', 'test', 'peers', 'recorder', 'containerd-shim-recorder-v2');
const CALLS = 'calls.jsonl';
const CONFIGS = 'configs';

export interface ActionRecord {
  kind: 'action';
  action: 'start' | 'delete';
  id: string;
  namespace: string;
  cwd: string;
  argv: string[];
  /** start only: the environment and the stdin bytes (hex) it was given. */
  env?: Record<string, string>;
  stdin?: string;
}

export interface RpcRecord {
  kind: 'rpc';
  service: string;
  method: string;
  /** The request's `id` field when the message has one (every Task request does). */
  id: string;
  /** The request payload, hex. */
  payload: string;
  /** Recorder daemon pid. */
  pid: number;
  /** Create only: the copy of <bundle>/config.json, relative to the record directory. */
  config?: string;
}

export type RecordLine = ActionRecord | RpcRecord;

/** One write per line with O_APPEND: concurrent recorder processes never interleave within a line. */
export function appendRecord(dir: string, rec: RecordLine): void {
  fs.appendFileSync(path.join(dir, CALLS), JSON.stringify(rec) + '\n');
}

export function readRecords(dir: string): RecordLine[] {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, CALLS), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as RecordLine);
}

/** TTRPC calls seen for a task id (all ids when omitted), in arrival order. */
export function rpcCalls(dir: string, id?: string): RpcRecord[] {
  return readRecords(dir).filter((r): r is RpcRecord => r.kind === 'rpc' && (id === undefined || r.id === id));
}

/** Copies config.json for a Create; a second Create of the same id gets its own file. */
export function saveCreateConfig(dir: string, id: string, bundle: string): string {
  fs.mkdirSync(path.join(dir, CONFIGS), { recursive: true });
  const data = fs.readFileSync(path.join(bundle, 'config.json'));
  for (let n = 0; ; n++) {
    const rel = path.join(CONFIGS, n === 0 ? `${id}.json` : `${id}.${n}.json`);
    try {
      fs.writeFileSync(path.join(dir, rel), data, { flag: 'wx' });
      return rel;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/** The OCI specs the recorder received at each Create of a task id, oldest first. */
export function createdSpecs(dir: string, id: string): Array<Record<string, unknown>> {
  return rpcCalls(dir, id)
    .filter((r) => r.method === 'Create' && r.config)
    .map((r) => JSON.parse(fs.readFileSync(path.join(dir, r.config!), 'utf8')) as Record<string, unknown>);
}
