// The bootstrap forms shims print on `start`, and containerd 2.3's BootstrapParams, encoded the way the
// upstream shims encode them (shared/reference/containerd-versions.md §1.1, §3.1), for the fake
// downstreams and the containerd harness. Written with the TTRPC library's protobuf helpers.
import { writeLenHeader, writeVarint, varintSize, WIRE_VARINT, Reader, WIRE_BYTES } from '../../src/ttrpc/protobuf';

export type Form = 'plain' | 'json2' | 'json3' | 'protobuf' | 'grpc';
export const FORMS: Form[] = ['plain', 'json2', 'json3', 'protobuf'];

function str(field: number, s: string): Buffer {
  const body = Buffer.from(s);
  const b = Buffer.alloc(1 + varintSize(body.length) + body.length);
  body.copy(b, writeLenHeader(b, 0, field, body.length));
  return b;
}

function varint(field: number, v: number): Buffer {
  const b = Buffer.alloc(1 + varintSize(v));
  b[0] = (field << 3) | WIRE_VARINT;
  return b.subarray(0, writeVarint(b, 1, v));
}

/** BootstrapResult{version=1, address=2, protocol=3, capabilities=4, metadata=5 (map entries key=1 value=2)}. */
export function encodeBootstrapResult(r: { version: number; address: string; protocol: string; capabilities?: number[]; metadata?: Record<string, string> }): Buffer {
  const parts = [varint(1, r.version), str(2, r.address), str(3, r.protocol)];
  for (const c of r.capabilities ?? []) parts.push(varint(4, c));
  for (const [k, v] of Object.entries(r.metadata ?? {})) {
    const entry = Buffer.concat([str(1, k), str(2, v)]);
    const b = Buffer.alloc(1 + varintSize(entry.length));
    parts.push(b.subarray(0, writeLenHeader(b, 0, 5, entry.length)), entry);
  }
  return Buffer.concat(parts);
}

export function decodeBootstrapResult(buf: Buffer): { version: number; address: string; protocol: string; capabilities: number[]; metadata: Record<string, string> } {
  const r = new Reader(buf);
  const out = { version: 0, address: '', protocol: '', capabilities: [] as number[], metadata: {} as Record<string, string> };
  while (!r.done) {
    const tag = r.tag();
    switch (tag >>> 3) {
      case 1: out.version = r.int32(); break;
      case 2: out.address = r.string(); break;
      case 3: out.protocol = r.string(); break;
      case 4: out.capabilities.push(r.int32()); break;
      case 5: {
        const e = new Reader(r.bytes());
        let k = '';
        let v = '';
        while (!e.done) {
          const t = e.tag();
          if ((t & 7) !== WIRE_BYTES) { e.skip(t & 7); continue; }
          if (t >>> 3 === 1) k = e.string(); else v = e.string();
        }
        out.metadata[k] = v;
        break;
      }
      default: r.skip(tag & 7);
    }
  }
  return out;
}

/**
 * What a shim of each kind prints: plain (Kata runtime-rs/Go, 1.6/1.7 runc; runtime-rs adds no newline),
 * JSON (Go json.Marshal, no newline; the 2.0-2.2 runc shim announces 3), protobuf (2.3 runc shim; the
 * metadata entry here holds a newline and a NUL so byte-exact pass-through is tested), grpc (refused).
 */
export function printBootstrap(form: Form, address: string): Buffer {
  switch (form) {
    case 'plain': return Buffer.from(address);
    case 'json2': return Buffer.from(JSON.stringify({ version: 2, address, protocol: 'ttrpc' }));
    case 'json3': return Buffer.from(JSON.stringify({ version: 3, address, protocol: 'ttrpc' }));
    case 'protobuf': return encodeBootstrapResult({ version: 3, address, protocol: 'ttrpc', capabilities: [0], metadata: { 'fake.bytes': 'a\nb\0c' } });
    case 'grpc': return Buffer.from(JSON.stringify({ version: 3, address, protocol: 'grpc' }));
  }
}

/** The task API version a form announces. */
export function announcedVersion(form: Form): 2 | 3 {
  return form === 'plain' || form === 'json2' ? 2 : 3;
}

/** BootstrapParams (2.3 stdin): instance_id=1, namespace=2, log_level=3, containerd_version=4,
 *  ttrpc address=5, grpc address=6, containerd binary=7. */
export function encodeBootstrapParams(p: { id: string; namespace: string; version: string; ttrpcAddress: string; grpcAddress: string; binary: string; logLevel?: number }): Buffer {
  const parts = [str(1, p.id), str(2, p.namespace)];
  if (p.logLevel) parts.push(varint(3, p.logLevel));
  parts.push(str(4, p.version), str(5, p.ttrpcAddress), str(6, p.grpcAddress), str(7, p.binary));
  return Buffer.concat(parts);
}
