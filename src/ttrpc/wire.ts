// ttrpc envelope messages (ttrpc/request.proto, google/rpc/status.proto), encoded and decoded by hand.
//   Request  { string service = 1; string method = 2; bytes payload = 3; int64 timeout_nano = 4; repeated KeyValue metadata = 5; }
//   KeyValue { string key = 1; string value = 2; }
//   Response { google.rpc.Status status = 1; bytes payload = 2; }
//   Status   { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
//   Any      { string type_url = 1; bytes value = 2; }
// Decoders return views (no copies) for bytes fields; encoders allocate exactly once.

import {
  Reader,
  WIRE_BYTES,
  WIRE_VARINT,
  expectWire,
  lenFieldSize,
  varintSize,
  writeLenHeader,
  writeVarint,
} from './protobuf';

export interface KeyValue {
  key: string;
  value: string;
}

export interface Request {
  service: string;
  method: string;
  payload: Buffer;
  /** Deadline relative to sending, in nanoseconds; 0 = none. Negative means already expired. */
  timeoutNano: number;
  metadata: KeyValue[];
}

export interface Any {
  typeUrl: string;
  value: Buffer;
}

export interface Status {
  code: number;
  message: string;
  details: Any[];
}

export interface Response {
  /** Absent on success (Go omits it); clients treat absent or code 0 as OK. */
  status?: Status;
  payload: Buffer;
}

const EMPTY = Buffer.alloc(0);

// ---- decoding ----

/** Decodes a ttrpc.Request; payload is a view into `data`. Throws an Error describing the defect. */
export function decodeRequest(data: Buffer): Request {
  const r = new Reader(data);
  const req: Request = { service: '', method: '', payload: EMPTY, timeoutNano: 0, metadata: [] };
  while (!r.done) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    switch (field) {
      case 1:
        expectWire('Request', field, wire, WIRE_BYTES);
        req.service = r.string();
        break;
      case 2:
        expectWire('Request', field, wire, WIRE_BYTES);
        req.method = r.string();
        break;
      case 3:
        expectWire('Request', field, wire, WIRE_BYTES);
        req.payload = r.bytes();
        break;
      case 4:
        expectWire('Request', field, wire, WIRE_VARINT);
        req.timeoutNano = r.int64();
        break;
      case 5: {
        expectWire('Request', field, wire, WIRE_BYTES);
        const b = r.bytes();
        req.metadata.push(decodeKeyValue(b));
        break;
      }
      default:
        r.skip(wire);
    }
  }
  return req;
}

function decodeKeyValue(b: Buffer): KeyValue {
  const r = new Reader(b);
  const kv: KeyValue = { key: '', value: '' };
  while (!r.done) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 1 || field === 2) {
      expectWire('KeyValue', field, wire, WIRE_BYTES);
      if (field === 1) kv.key = r.string();
      else kv.value = r.string();
    } else {
      r.skip(wire);
    }
  }
  return kv;
}

/** Reads only service and method (for routing/logging in a forwarder); the payload is skipped, not copied. */
export function peekServiceMethod(data: Buffer): { service: string; method: string } {
  const r = new Reader(data);
  let service = '';
  let method = '';
  while (!r.done) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 1 || field === 2) {
      expectWire('Request', field, wire, WIRE_BYTES);
      if (field === 1) service = r.string();
      else method = r.string();
    } else {
      r.skip(wire);
    }
  }
  return { service, method };
}

/**
 * The service and method of a Request from its first bytes only (a forwarder's view of a frame still
 * arriving): both names when they come first, as every ttrpc encoder writes them, else undefined.
 */
export function peekCallName(prefix: Buffer): { service: string; method: string } | undefined {
  const r = new Reader(prefix);
  let service: string | undefined;
  let method: string | undefined;
  try {
    while ((service === undefined || method === undefined) && !r.done) {
      const t = r.tag();
      if (t === ((1 << 3) | WIRE_BYTES)) service = r.string();
      else if (t === ((2 << 3) | WIRE_BYTES)) method = r.string();
      else return undefined;
    }
  } catch {
    // A name cut off by the end of the prefix, or not a Request at all: that name stays undefined.
  }
  return service !== undefined && method !== undefined ? { service, method } : undefined;
}

/** Decodes a ttrpc.Response; payload and detail values are views into `data`. */
export function decodeResponse(data: Buffer): Response {
  const r = new Reader(data);
  const res: Response = { payload: EMPTY };
  while (!r.done) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 1) {
      expectWire('Response', field, wire, WIRE_BYTES);
      res.status = decodeStatus(r.bytes());
    } else if (field === 2) {
      expectWire('Response', field, wire, WIRE_BYTES);
      res.payload = r.bytes();
    } else {
      r.skip(wire);
    }
  }
  return res;
}

export function decodeStatus(b: Buffer): Status {
  const r = new Reader(b);
  const st: Status = { code: 0, message: '', details: [] };
  while (!r.done) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 1) {
      expectWire('Status', field, wire, WIRE_VARINT);
      st.code = r.int32();
    } else if (field === 2) {
      expectWire('Status', field, wire, WIRE_BYTES);
      st.message = r.string();
    } else if (field === 3) {
      expectWire('Status', field, wire, WIRE_BYTES);
      st.details.push(decodeAny(r.bytes()));
    } else {
      r.skip(wire);
    }
  }
  return st;
}

function decodeAny(b: Buffer): Any {
  const r = new Reader(b);
  const a: Any = { typeUrl: '', value: EMPTY };
  while (!r.done) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 1) {
      expectWire('Any', field, wire, WIRE_BYTES);
      a.typeUrl = r.string();
    } else if (field === 2) {
      expectWire('Any', field, wire, WIRE_BYTES);
      a.value = r.bytes();
    } else {
      r.skip(wire);
    }
  }
  return a;
}

// ---- encoding ----

function strField(len: number): number {
  return len === 0 ? 0 : lenFieldSize(len);
}

function writeStr(buf: Buffer, off: number, field: number, s: string, len: number): number {
  if (len === 0) return off;
  off = writeLenHeader(buf, off, field, len);
  // Stryker disable next-line StringLiteral: Node reads an empty encoding name as 'utf8'; the bytes are the same
  buf.write(s, off, len, 'utf8');
  return off + len;
}

function writeBytes(buf: Buffer, off: number, field: number, b: Uint8Array): number {
  if (b.length === 0) return off;
  off = writeLenHeader(buf, off, field, b.length);
  buf.set(b, off);
  return off + b.length;
}

function checkInt64(name: string, v: number): void {
  if (!Number.isSafeInteger(v)) throw new RangeError(`ttrpc: ${name} ${v} is not a safe integer`);
}

type RequestFields = Partial<Omit<Request, 'payload'>> & { service: string; method: string; payload?: Uint8Array };

/** Encodes a ttrpc.Request (proto3: empty/zero fields are omitted, fields in number order, like Go). */
export function encodeRequest(r: RequestFields): Buffer {
  return encodeRequestAfter(r, 0);
}

/**
 * Internal: the Request encoded after `headroom` unwritten bytes, so a caller can put a frame header in
 * front without another buffer and copy (Channel.sendWithHeadroom).
 */
export function encodeRequestAfter(r: RequestFields, headroom: number): Buffer {
  const payload = r.payload ?? EMPTY;
  const timeout = r.timeoutNano ?? 0;
  checkInt64('timeoutNano', timeout);
  const metadata = r.metadata ?? [];
  // Stryker disable StringLiteral: Node reads an empty encoding name as 'utf8'; the lengths are the same
  const sLen = Buffer.byteLength(r.service, 'utf8');
  const mLen = Buffer.byteLength(r.method, 'utf8');
  // Stryker restore StringLiteral
  let size = strField(sLen) + strField(mLen) + (payload.length ? lenFieldSize(payload.length) : 0);
  if (timeout !== 0) size += 1 + varintSize(timeout);
  // Stryker disable next-line ArrayDeclaration: the length only presizes the array; every slot read is written first
  const kvLens = new Array<number>(metadata.length * 3);
  for (let i = 0; i < metadata.length; i++) {
    // Stryker disable StringLiteral: Node reads an empty encoding name as 'utf8'; the lengths are the same
    const kl = Buffer.byteLength(metadata[i].key, 'utf8');
    const vl = Buffer.byteLength(metadata[i].value, 'utf8');
    // Stryker restore StringLiteral
    const body = strField(kl) + strField(vl);
    kvLens[i * 3] = kl;
    kvLens[i * 3 + 1] = vl;
    kvLens[i * 3 + 2] = body;
    size += lenFieldSize(body);
  }
  const buf = Buffer.allocUnsafe(headroom + size);
  let off = writeStr(buf, headroom, 1, r.service, sLen);
  off = writeStr(buf, off, 2, r.method, mLen);
  off = writeBytes(buf, off, 3, payload);
  if (timeout !== 0) {
    buf[off++] = (4 << 3) | WIRE_VARINT;
    off = writeVarint(buf, off, timeout);
  }
  for (let i = 0; i < metadata.length; i++) {
    off = writeLenHeader(buf, off, 5, kvLens[i * 3 + 2]);
    off = writeStr(buf, off, 1, metadata[i].key, kvLens[i * 3]);
    off = writeStr(buf, off, 2, metadata[i].value, kvLens[i * 3 + 1]);
  }
  return buf;
}

function isOk(s: Status): boolean {
  return s.code === 0 && !s.message && (!s.details || s.details.length === 0);
}

/** Encodes a google.rpc.Status body (without the enclosing field header). */
export function encodeStatus(s: Status): Buffer {
  if (!Number.isInteger(s.code) || s.code < -0x80000000 || s.code > 0x7fffffff) {
    throw new RangeError(`ttrpc: status code ${s.code} is not an int32`);
  }
  const message = s.message ?? '';
  // Stryker disable next-line StringLiteral: Node reads an empty encoding name as 'utf8'; the length is the same
  const msgLen = Buffer.byteLength(message, 'utf8');
  const details = s.details ?? [];
  let size = (s.code !== 0 ? 1 + varintSize(s.code) : 0) + strField(msgLen);
  // Stryker disable next-line ArrayDeclaration: the length only presizes the array; every slot read is written first
  const anyLens = new Array<number>(details.length * 2);
  for (let i = 0; i < details.length; i++) {
    // Stryker disable next-line StringLiteral: Node reads an empty encoding name as 'utf8'; the length is the same
    const ul = Buffer.byteLength(details[i].typeUrl, 'utf8');
    const body = strField(ul) + (details[i].value.length ? lenFieldSize(details[i].value.length) : 0);
    anyLens[i * 2] = ul;
    anyLens[i * 2 + 1] = body;
    size += lenFieldSize(body);
  }
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  if (s.code !== 0) {
    buf[off++] = (1 << 3) | WIRE_VARINT;
    off = writeVarint(buf, off, s.code);
  }
  off = writeStr(buf, off, 2, message, msgLen);
  for (let i = 0; i < details.length; i++) {
    off = writeLenHeader(buf, off, 3, anyLens[i * 2 + 1]);
    off = writeStr(buf, off, 1, details[i].typeUrl, anyLens[i * 2]);
    off = writeBytes(buf, off, 2, details[i].value);
  }
  return buf;
}

/**
 * Encodes a ttrpc.Response. An absent status, or an OK status with no message or details, is omitted
 * entirely, as Go's server does on success.
 */
export function encodeResponse(r: { status?: Status | null; payload?: Uint8Array }): Buffer {
  return encodeResponseAfter(r.status, r.payload ?? EMPTY, 0);
}

/** Internal: encodeResponse after `headroom` unwritten bytes (see encodeRequestAfter). */
export function encodeResponseAfter(status: Status | null | undefined, payload: Uint8Array, headroom: number): Buffer {
  const st = status && !isOk(status) ? encodeStatus(status) : null;
  const size = (st ? lenFieldSize(st.length) : 0) + (payload.length ? lenFieldSize(payload.length) : 0);
  const buf = Buffer.allocUnsafe(headroom + size);
  let off = headroom;
  if (st) {
    off = writeLenHeader(buf, off, 1, st.length);
    buf.set(st, off);
    off += st.length;
  }
  writeBytes(buf, off, 2, payload);
  return buf;
}
