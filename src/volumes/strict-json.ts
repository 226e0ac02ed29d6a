// A small JSON parser that, unlike JSON.parse, rejects duplicate object keys (serde does for struct
// fields; JSON.parse silently keeps the last) and keeps objects as Maps so a key like "__proto__" is
// plain data. Errors carry a character offset for the message.

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** serde_json's recursion limit: Kata could not read anything nested deeper, and a recursive parser must stop somewhere. */
export const MAX_JSON_DEPTH = 128;

export class JsonSyntaxError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} at character ${offset + 1}`);
    this.name = 'JsonSyntaxError';
  }
}

export function parseStrictJson(text: string): JsonValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value([]);
  p.ws();
  if (p.i < text.length) throw new JsonSyntaxError('trailing characters after the JSON value', p.i);
  return v;
}

export function isJsonObject(v: JsonValue): v is JsonObject {
  return v instanceof Map;
}

export function describeJsonType(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Map) return 'an object';
  if (typeof v === 'string') return `a string ${JSON.stringify(v)}`;
  return `a ${typeof v} ${String(v)}`;
}

class Parser {
  i = 0;
  constructor(private readonly s: string) {}

  ws(): void {
    while (' \t\n\r'.includes(this.s[this.i])) this.i++; // past the end, s[i] is undefined: not white space
  }

  private fail(msg: string): never {
    throw new JsonSyntaxError(msg, this.i);
  }

  private describeHere(): string {
    return this.i >= this.s.length ? 'end of input' : `${JSON.stringify(this.s[this.i])}`;
  }

  value(path: string[], depth = 0): JsonValue {
    const c = this.s[this.i];
    if ((c === '{' || c === '[') && depth >= MAX_JSON_DEPTH) this.fail(`nested deeper than ${MAX_JSON_DEPTH} levels (serde_json, which Kata uses, stops there)`);
    if (c === '{') return this.object(path, depth + 1);
    if (c === '[') return this.array(path, depth + 1);
    if (c === '"') return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    for (const [word, val] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return val;
      }
    }
    return this.fail(`unexpected ${this.describeHere()}`);
  }

  private object(path: string[], depth: number): JsonObject {
    const out: JsonObject = new Map();
    this.i++;
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail(`expected a quoted key, found ${this.describeHere()}`);
      const keyAt = this.i;
      const key = this.string();
      if (out.has(key)) {
        const where = path.length ? ` in ${path.join('.')}` : '';
        throw new JsonSyntaxError(`duplicate key ${JSON.stringify(key)}${where}`, keyAt);
      }
      this.ws();
      if (this.s[this.i] !== ':') this.fail(`expected ':' after key ${JSON.stringify(key)}, found ${this.describeHere()}`);
      this.i++;
      this.ws();
      out.set(key, this.value([...path, key], depth));
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === '}') {
        this.i++;
        return out;
      }
      this.fail(`expected ',' or '}', found ${this.describeHere()}`);
    }
  }

  private array(path: string[], depth: number): JsonValue[] {
    const out: JsonValue[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(path, depth));
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === ']') {
        this.i++;
        return out;
      }
      this.fail(`expected ',' or ']', found ${this.describeHere()}`);
    }
  }

  private string(): string {
    const start = this.i;
    this.i++;
    let out = '';
    for (;;) {
      const c = this.s[this.i] as string | undefined;
      if (c === undefined) throw new JsonSyntaxError('unterminated string', start);
      if (c === '"') {
        this.i++;
        return out;
      }
      if (c < ' ') this.fail('control character in string (escape it)');
      if (c !== '\\') {
        out += c;
        this.i++;
        continue;
      }
      const e = this.s[this.i + 1];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e in simple) { // past the end, e is undefined: not a key of simple
        out += simple[e];
        this.i += 2;
      } else if (e === 'u' && /[0-9a-fA-F]{4}/.test(this.s.slice(this.i + 2, this.i + 6))) { // the slice is at most 4 long
        out += String.fromCharCode(parseInt(this.s.slice(this.i + 2, this.i + 6), 16));
        this.i += 6;
      } else {
        this.fail('invalid escape in string');
      }
    }
  }

  private number(): number {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i));
    if (!m) this.fail('invalid number');
    this.i += m[0].length;
    return Number(m[0]);
  }
}
