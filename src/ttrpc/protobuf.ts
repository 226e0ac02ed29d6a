// Minimal protobuf (proto3 wire format) reader/writer, enough for ttrpc's own envelope messages.
// Hand-written so the library has no dependency outside Node built-ins.

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_BYTES = 2;
export const WIRE_FIXED32 = 5;

/** Sequential reader over a Buffer region; every method throws a descriptive Error on malformed input. */
export class Reader {
  pos: number;
  constructor(readonly buf: Buffer, start = 0, readonly end = buf.length) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** Reads a varint as two uint32 halves (lo, hi) into this.lo/this.hi. */
  lo = 0;
  hi = 0;
  private varint64(): void {
    const b = this.buf;
    let lo = 0;
    let hi = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('unexpected EOF in varint');
      const byte = b[this.pos++];
      if (shift < 28) {
        lo |= (byte & 0x7f) << shift;
      } else if (shift === 28) {
        lo |= (byte & 0x0f) << 28;
        hi |= (byte & 0x7f) >>> 4;
      } else {
        // Stryker disable next-line ArithmeticOperator: JS takes a shift count mod 32, so shift + 32 shifts as shift - 32 does
        hi |= (byte & 0x7f) << (shift - 32);
      }
      if (byte < 0x80) {
        if (i === 9 && byte > 1) throw new Error('varint overflows 64 bits');
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
      shift += 7;
    }
    throw new Error('varint longer than 10 bytes');
  }

  /** uint32 / tag: low 32 bits of the varint. */
  uint32(): number {
    this.varint64();
    return this.lo;
  }

  /** int32: low 32 bits, sign-extended (negative int32 are sent as 10-byte varints). */
  int32(): number {
    this.varint64();
    return this.lo | 0;
  }

  /** int64 as a JS number (exact up to 2^53; negative values supported). */
  int64(): number {
    this.varint64();
    if (this.hi & 0x80000000) {
      const lo = ~this.lo >>> 0;
      const hi = ~this.hi >>> 0;
      return -(hi * 0x100000000 + lo + 1);
    }
    return this.hi * 0x100000000 + this.lo;
  }

  /** Length-delimited field: a view of its bytes (no copy). */
  bytes(): Buffer {
    const len = this.uint32();
    if (this.hi !== 0 || len > this.end - this.pos) throw new Error(`length ${len} exceeds the remaining ${this.end - this.pos} bytes`);
    const start = this.pos;
    this.pos += len;
    return this.buf.subarray(start, this.pos);
  }

  string(): string {
    const len = this.uint32();
    if (this.hi !== 0 || len > this.end - this.pos) throw new Error(`length ${len} exceeds the remaining ${this.end - this.pos} bytes`);
    const start = this.pos;
    this.pos += len;
    return this.buf.toString('utf8', start, this.pos);
  }

  /** Reads a tag (field << 3 | wire type); rejects field 0 and unsupported wire types. */
  tag(): number {
    const t = this.uint32();
    if (this.hi !== 0) throw new Error('field tag overflows 32 bits');
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 0) throw new Error(`illegal tag 0 (wire type ${wire})`);
    if (wire !== WIRE_VARINT && wire !== WIRE_FIXED64 && wire !== WIRE_BYTES && wire !== WIRE_FIXED32) {
      throw new Error(`illegal wire type ${wire} for field ${field}`);
    }
    return t;
  }

  /** Skips a field of the given wire type (unknown fields are ignored, as protobuf requires). */
  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint64();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_BYTES:
        this.bytes();
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      default:
        throw new Error(`illegal wire type ${wire}`);
    }
  }

  private advance(n: number): void {
    if (this.end - this.pos < n) throw new Error('unexpected EOF');
    this.pos += n;
  }
}

/** Asserts a known field carries the expected wire type. */
export function expectWire(msg: string, field: number, wire: number, want: number): void {
  if (wire !== want) throw new Error(`${msg}: wrong wire type ${wire} for field ${field}`);
}

export function varintSize(v: number): number {
  // v is a non-negative integer below 2^53 or a negative int64.
  if (v < 0) return 10;
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes an int64/uint varint (negative numbers as 10-byte two's complement); returns the new offset. */
export function writeVarint(buf: Buffer, off: number, v: number): number {
  if (v < 0) {
    // Two's complement over 64 bits, split into 32-bit halves.
    const abs = -v;
    let lo = abs >>> 0;
    let hi = Math.floor(abs / 0x100000000) >>> 0;
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
    for (let i = 0; i < 9; i++) {
      buf[off++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi = hi >>> 7;
    }
    buf[off++] = lo & 0x01;
    return off;
  }
  while (v >= 0x80) {
    buf[off++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[off++] = v;
  return off;
}

/** Size of a length-delimited field (tag + length + body), tag < 128. */
export function lenFieldSize(bodyLength: number): number {
  return 1 + varintSize(bodyLength) + bodyLength;
}

export function writeLenHeader(buf: Buffer, off: number, field: number, len: number): number {
  buf[off++] = (field << 3) | WIRE_BYTES;
  return writeVarint(buf, off, len);
}
