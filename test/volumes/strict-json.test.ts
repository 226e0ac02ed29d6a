import * as assert from 'assert';
import { JsonSyntaxError, MAX_JSON_DEPTH, type JsonValue, describeJsonType, isJsonObject, parseStrictJson } from '../../src/volumes/strict-json';

/** The syntax error parseStrictJson throws for text: its full message (which names the character) and offset. */
function syntaxError(text: string): { message: string; offset: number } {
  try {
    parseStrictJson(text);
  } catch (e) {
    assert.ok(e instanceof JsonSyntaxError, `expected a JsonSyntaxError for ${JSON.stringify(text)}, got ${String(e)}`);
    assert.strictEqual(e.name, 'JsonSyntaxError');
    return { message: e.message, offset: e.offset };
  }
  assert.fail(`expected ${JSON.stringify(text)} to be refused`);
}

/** Maps back to plain objects, so results compare with deepStrictEqual. */
function plain(v: JsonValue): unknown {
  if (isJsonObject(v)) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

describe('volumes/strict-json', () => {
  it('parses every JSON value type, with white space (space, tab, newline, return) around and between tokens', () => {
    const v = parseStrictJson(' \t\n\r{ "a" :\t[ 1 , -2.5 ,\n0, 9, true , false , null , "s" , { } , [ ] ] ,\r\n"b" : {"c":"d"} } \n');
    assert.deepStrictEqual(plain(v), { a: [1, -2.5, 0, 9, true, false, null, 's', {}, []], b: { c: 'd' } });
    assert.strictEqual(parseStrictJson('7'), 7);
    assert.strictEqual(parseStrictJson('"x"'), 'x');
    assert.deepStrictEqual(plain(parseStrictJson('[]')), []);
  });

  it('keeps objects as Maps: "__proto__" is a key like any other', () => {
    const v = parseStrictJson('{"__proto__":{"polluted":"yes"}}');
    assert.ok(isJsonObject(v));
    assert.deepStrictEqual([...v.keys()], ['__proto__']);
    assert.strictEqual(({} as Record<string, unknown>).polluted, undefined);
    assert.strictEqual(isJsonObject([]), false);
  });

  it('parses numbers as JSON writes them: sign, fraction, exponent', () => {
    const cases: Array<[string, number]> = [
      ['0', 0], ['9', 9], ['-0', -0], ['123', 123], ['1.25', 1.25], ['-0.5', -0.5],
      ['1e5', 1e5], ['1E5', 1e5], ['1e+5', 1e5], ['1e-2', 0.01], ['2e10', 2e10], ['1.5e+12', 1.5e12],
    ];
    for (const [text, n] of cases) assert.deepStrictEqual(parseStrictJson(`[${text}]`), [n], text);
  });

  it('refuses malformed numbers, naming the character where parsing stopped', () => {
    assert.deepStrictEqual(syntaxError('-'), { message: 'invalid number at character 1', offset: 0 });
    assert.deepStrictEqual(syntaxError('[-a1]'), { message: 'invalid number at character 2', offset: 1 });
    assert.strictEqual(syntaxError('01').message, 'trailing characters after the JSON value at character 2');
    assert.strictEqual(syntaxError('[1.]').message, 'expected \',\' or \']\', found "." at character 3');
    assert.strictEqual(syntaxError('[1e]').message, 'expected \',\' or \']\', found "e" at character 3');
    assert.strictEqual(syntaxError('.5').message, 'unexpected "." at character 1');
    assert.strictEqual(syntaxError('+1').message, 'unexpected "+" at character 1');
  });

  it('decodes every escape, \\u escapes of either case and surrogate pairs included', () => {
    assert.strictEqual(parseStrictJson('"\\"\\\\\\/\\b\\f\\n\\r\\t"'), '"\\/\b\f\n\r\t');
    assert.strictEqual(parseStrictJson('"a\\u0041\\u00e9\\u00E9z"'), 'aAééz');
    assert.strictEqual(parseStrictJson('"\\ud83d\\ude00"'), '\u{1F600}');
    assert.strictEqual(parseStrictJson('"\\u0000"'), '\0');
  });

  it('refuses bad strings: unterminated, raw control characters, unknown or short escapes', () => {
    assert.deepStrictEqual(syntaxError('["abc'), { message: 'unterminated string at character 2', offset: 1 });
    assert.strictEqual(syntaxError('"a\nb"').message, 'control character in string (escape it) at character 3');
    assert.strictEqual(syntaxError('"a\\x"').message, 'invalid escape in string at character 3');
    assert.strictEqual(syntaxError('"\\').message, 'invalid escape in string at character 2');
    assert.strictEqual(syntaxError('"\\u12"').message, 'invalid escape in string at character 2');
    assert.strictEqual(syntaxError('["\\u12", "abcd"]').message, 'invalid escape in string at character 3', 'the four digits must follow the \\u');
    assert.strictEqual(syntaxError('"\\u12g4"').message, 'invalid escape in string at character 2');
    assert.strictEqual(syntaxError('"\\U0041"').message, 'invalid escape in string at character 2');
  });

  it('refuses a key given twice, naming the key, where it is nested and its position', () => {
    assert.deepStrictEqual(syntaxError('{"a":1,"a":2}'), { message: 'duplicate key "a" at character 8', offset: 7 });
    assert.strictEqual(syntaxError('{"m":{"n":{"k":1, "k":2}}}').message, 'duplicate key "k" in m.n at character 19');
    assert.deepStrictEqual(plain(parseStrictJson('{"a":{"k":1},"b":{"k":2}}')), { a: { k: 1 }, b: { k: 2 } });
  });

  it('says what it found where the syntax breaks, or that the input ended', () => {
    const cases: Array<[string, string]> = [
      ['', 'unexpected end of input at character 1'],
      ['{"a":', 'unexpected end of input at character 6'],
      ['{"a":1', "expected ',' or '}', found end of input at character 7"],
      ['{"a":1 "b":2}', 'expected \',\' or \'}\', found "\\"" at character 8'],
      ['{"a" 1}', 'expected \':\' after key "a", found "1" at character 6'],
      ['{"a"', 'expected \':\' after key "a", found end of input at character 5'],
      ['{a:1}', 'expected a quoted key, found "a" at character 2'],
      ['{"a":1,}', 'expected a quoted key, found "}" at character 8'],
      ['[1 2]', 'expected \',\' or \']\', found "2" at character 4'],
      ['[1', "expected ',' or ']', found end of input at character 3"],
      ['[1,]', 'unexpected "]" at character 4'],
      ['tru', 'unexpected "t" at character 1'],
      ['{"a":1} x', 'trailing characters after the JSON value at character 9'],
      ['\v1', 'unexpected "\\u000b" at character 1'],
    ];
    for (const [text, message] of cases) assert.strictEqual(syntaxError(text).message, message, JSON.stringify(text));
  });

  it(`accepts nesting up to ${MAX_JSON_DEPTH} levels, as serde_json, and refuses one more without overflowing the stack`, () => {
    assert.strictEqual(MAX_JSON_DEPTH, 128);
    const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);
    let v = parseStrictJson(deep(MAX_JSON_DEPTH));
    for (let i = 1; i < MAX_JSON_DEPTH; i++) v = (v as JsonValue[])[0];
    assert.deepStrictEqual(v, []);
    assert.ok(Array.isArray(parseStrictJson(`${'['.repeat(MAX_JSON_DEPTH)}1, "s", true${']'.repeat(MAX_JSON_DEPTH)}`)), 'scalars at the deepest level are fine');
    assert.deepStrictEqual(syntaxError(deep(MAX_JSON_DEPTH + 1)), { message: 'nested deeper than 128 levels (serde_json, which Kata uses, stops there) at character 129', offset: 128 });
    const objects = (n: number): string => '{"k":'.repeat(n - 1) + '{}' + '}'.repeat(n - 1);
    assert.ok(isJsonObject(parseStrictJson(objects(MAX_JSON_DEPTH))));
    assert.strictEqual(syntaxError(objects(MAX_JSON_DEPTH + 1)).offset, 5 * MAX_JSON_DEPTH);
    assert.strictEqual(syntaxError(`[${'{"k":'.repeat(MAX_JSON_DEPTH)}1`).message.split(' at ')[0], 'nested deeper than 128 levels (serde_json, which Kata uses, stops there)');
    assert.strictEqual(syntaxError('['.repeat(100000)).message.split(' at ')[0], 'nested deeper than 128 levels (serde_json, which Kata uses, stops there)');
  });

  it('describes a value\'s type for messages', () => {
    const cases: Array<[JsonValue, string]> = [
      [null, 'null'], [[], 'an array'], [new Map(), 'an object'], ['x', 'a string "x"'],
      [3, 'a number 3'], [true, 'a boolean true'], [false, 'a boolean false'],
    ];
    for (const [v, text] of cases) assert.strictEqual(describeJsonType(v), text);
  });
});
