// What a downstream shim's `start` printed, and our answer in the same form. containerd picks the task
// API from the announced version (2 -> containerd.task.v2.Task, 3 -> v3), so we must echo the
// downstream's form and version, only with our address: a plain address in front of a v3-only shim
// (containerd 2.x runc) makes every call fail with Unimplemented. The three forms, as containerd reads
// them (shared/reference/containerd-versions.md §1.1-1.2):
//   plain     a bare address; version 2 (1.6+; Kata runtime-rs and Go, the 1.7 runc shim)
//   json      {"version":N,"address":...,"protocol":"ttrpc"} (1.7+; 2.0-2.2 runc shim, N=3)
//   protobuf  containerd.runtime.bootstrap.v1.BootstrapResult (2.3+ reads it first; 2.3 runc shim)
import { Reader, WIRE_BYTES, WIRE_VARINT, writeLenHeader, varintSize } from '../ttrpc/protobuf';

export type BootstrapForm = 'plain' | 'json' | 'protobuf';

export interface Bootstrap {
  form: BootstrapForm;
  /** The shim version the downstream announced (containerd uses the task API of that version). */
  version: number;
  protocol: string;
  address: string;
  /** Exactly what the downstream printed on stdout. */
  raw: Buffer;
}

/** The downstream's answer is unusable behind katavol; the message says why and what to do. */
export class BootstrapError extends Error {
  override readonly name = 'BootstrapError';
}

/** BootstrapResult: version=1 int32, address=2, protocol=3, capabilities=4 (repeated enum), metadata=5 (map). */
const PB_WIRE: Record<number, number[]> = { 1: [WIRE_VARINT], 2: [WIRE_BYTES], 3: [WIRE_BYTES], 4: [WIRE_VARINT, WIRE_BYTES], 5: [WIRE_BYTES] };

interface PbField { field: number; start: number; end: number }

/** Parses a BootstrapResult strictly (as Go's proto.Unmarshal would accept it), or undefined. */
function parseProtobuf(raw: Buffer): { version: number; address: string; protocol: string; fields: PbField[] } | undefined {
  if (raw.length === 0) return undefined;
  const r = new Reader(raw);
  const out = { version: 0, address: '', protocol: '', fields: [] as PbField[] };
  try {
    while (!r.done) {
      const start = r.pos;
      const tag = r.tag();
      const field = tag >>> 3;
      const wire = tag & 7;
      const allowed = PB_WIRE[field];
      if (allowed && !allowed.includes(wire)) return undefined;
      if (field === 1) out.version = r.int32();
      else if (field === 2) out.address = checkedString(r);
      else if (field === 3) out.protocol = checkedString(r);
      else r.skip(wire);
      out.fields.push({ field, start, end: r.pos });
    }
  } catch {
    return undefined;
  }
  // A text address never parses (see the reference, §1.2); an empty one is not an answer either.
  return out.address ? out : undefined;
}

/** proto3 strings must be valid UTF-8 (Go rejects the message otherwise). */
function checkedString(r: Reader): string {
  const b = r.bytes();
  const s = b.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(b)) throw new Error('invalid UTF-8');
  return s;
}

/**
 * Reads a downstream `start` output in containerd 2.3's order: protobuf, then JSON, then a plain
 * address. Refuses what katavol cannot proxy (a protocol other than TTRPC) with a clear message.
 */
export function parseBootstrap(raw: Buffer, downstream: string): Bootstrap {
  const pb = parseProtobuf(raw);
  if (pb) return checkProtocol({ form: 'protobuf', version: pb.version, protocol: pb.protocol, address: pb.address, raw }, downstream);

  const text = raw.toString('utf8').trim();
  if (text.startsWith('{')) {
    let j: unknown;
    try { j = JSON.parse(text); } catch { j = undefined; }
    if (j && typeof j === 'object' && !Array.isArray(j)) {
      const get = (k: string): unknown => jsonKey(j as Record<string, unknown>, k);
      const version = get('version');
      if (!Number.isInteger(version) || (version as number) < 2) {
        throw new BootstrapError(`downstream shim ${downstream} start printed a JSON bootstrap with version ${JSON.stringify(version)}: containerd reads such output as a plain address and cannot connect; a shim v2 announces version 2 or 3`);
      }
      const address = get('address');
      if (typeof address !== 'string' || !address) {
        throw new BootstrapError(`downstream shim ${downstream} start printed a JSON bootstrap without an address: ${text.slice(0, 200)}`);
      }
      const protocol = get('protocol');
      return checkProtocol({ form: 'json', version: version as number, protocol: typeof protocol === 'string' ? protocol : '', address, raw }, downstream);
    }
  }
  // Take the last line: some shims log to stderr, which containerd's CombinedOutput mixes in; we keep them apart.
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const address = lines[lines.length - 1] ?? '';
  if (!address) throw new BootstrapError(`downstream shim ${downstream} start printed no address`);
  return { form: 'plain', version: 2, protocol: 'ttrpc', address, raw };
}

/** Go's encoding/json matches keys case-insensitively; the last match wins. */
function jsonKey(o: Record<string, unknown>, key: string): unknown {
  let v: unknown;
  for (const k of Object.keys(o)) if (k.toLowerCase() === key) v = o[k];
  return v;
}

function checkProtocol(b: Bootstrap, downstream: string): Bootstrap {
  // containerd compares the protocol case-insensitively (makeConnection).
  if (b.protocol.toLowerCase() !== 'ttrpc') {
    throw new BootstrapError(`downstream shim ${downstream} announced protocol ${JSON.stringify(b.protocol)} at ${b.address} (${b.form} bootstrap, version ${b.version}): katavol proxies TTRPC only; configure the downstream to serve TTRPC, or run it without katavol`);
  }
  return b;
}

/** Our answer to containerd: the downstream's form and version, with our address and every other field kept. */
export function answerBootstrap(b: Bootstrap, address: string): Buffer {
  switch (b.form) {
    case 'plain':
      return Buffer.from(address);
    case 'json': {
      const text = b.raw.toString('utf8');
      const m = /^(\s*)([\s\S]*?)(\s*)$/.exec(text)!;
      const o = JSON.parse(m[2]) as Record<string, unknown>;
      for (const k of Object.keys(o)) if (k.toLowerCase() === 'address') o[k] = address;
      return Buffer.from(m[1] + JSON.stringify(o) + m[3]);
    }
    case 'protobuf': {
      // Field 2 replaced where it first stood (a repeated scalar's last value wins, so later copies go);
      // every other field's bytes copied unchanged, in order.
      const pb = parseProtobuf(b.raw)!;
      const body = Buffer.from(address);
      const ours = Buffer.alloc(1 + varintSize(body.length) + body.length);
      body.copy(ours, writeLenHeader(ours, 0, 2, body.length));
      const parts: Buffer[] = [];
      let replaced = false;
      for (const f of pb.fields) {
        if (f.field !== 2) parts.push(b.raw.subarray(f.start, f.end));
        else if (!replaced) { parts.push(ours); replaced = true; }
      }
      return Buffer.concat(parts);
    }
  }
}
