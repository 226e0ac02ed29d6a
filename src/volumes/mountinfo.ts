// mountInfo.json: lenient reading of what users type (legacy keys, metadata given as a JSON string,
// null), strict on everything else, and one canonical serialisation that Kata runtime-rs parses.
import { type MountInfo, VOLUME_TYPES, VolumeError, type VolumeType, messageOf } from './types';
import { type JsonObject, JsonSyntaxError, type JsonValue, describeJsonType, isJsonObject, parseStrictJson } from './strict-json';

/** Builds the VolumeError for this entry: what is wrong, the fix, and what failed underneath. */
type Bad = (problem: string, fix: string, cause?: unknown) => VolumeError;

export const EXAMPLE_MOUNT_INFO = '{"volume-type":"directvol","device":"/dev/sdb","fstype":"ext4"}';

/** Legacy spellings from older Kata docs -> canonical key. */
const LEGACY_KEYS: Record<string, string> = { volume_type: 'volume-type', fs_type: 'fstype' };
const CANONICAL_KEYS = ['volume-type', 'device', 'fstype', 'metadata', 'options'];

/** Values users plausibly meant for each volume type (runtime-rs rejects them all). */
const TYPE_ALIASES: Record<string, VolumeType> = {
  block: 'directvol', blk: 'directvol', raw: 'directvol', rawblock: 'directvol', direct: 'directvol',
  directvolume: 'directvol', file: 'directvol', disk: 'directvol', virtioblk: 'directvol',
  vfio: 'vfiovol', vfiovolume: 'vfiovol', vfiopci: 'vfiovol',
  spdk: 'spdkvol', spdkvolume: 'spdkvol', vhostuserblk: 'spdkvol', vhostuser: 'spdkvol',
  spool: 'spoolvol', spoolvolume: 'spoolvol',
};

export interface ParseWhere {
  volumePath: string;
  file?: string;
  /** When given, receives notes about accepted non-canonical input (legacy keys, ignored keys). */
  notes?: string[];
}

/** A key or type name as compared for "did you mean": lower case, without -, _ and blanks. */
export const squash = (k: string): string => k.toLowerCase().replace(/[-_\s]/g, '');

export function suggestVolumeType(value: string): VolumeType | undefined {
  const s = squash(value);
  return VOLUME_TYPES.find((t) => t === s) ?? TYPE_ALIASES[s];
}

export function parseMountInfo(json: string, where: ParseWhere): MountInfo {
  const bad: Bad = (problem, fix, cause) => new VolumeError(where.volumePath, problem, fix, where.file, cause);
  const note = (s: string): void => void where.notes?.push(s);
  const fixJson = `give one JSON object such as '${EXAMPLE_MOUNT_INFO}' (single-quote it in the shell)`;

  let root: JsonValue;
  try {
    root = parseStrictJson(json);
  } catch (e) {
    // Stryker disable next-line ConditionalExpression: parseStrictJson throws only JsonSyntaxError (its depth is capped); the guard keeps a bug from reading as bad input
    if (!(e instanceof JsonSyntaxError)) throw e;
    const dup = /^duplicate key/.test(e.message);
    throw bad(`mount info is not valid JSON: ${e.message}`, dup ? 'give each key once' : fixJson, e);
  }
  if (!isJsonObject(root)) throw bad(`mount info must be a JSON object, found ${describeJsonType(root)}`, fixJson);

  // Map every key to its canonical name first, so `volume_type` + `volume-type` is a duplicate.
  const fields = new Map<string, JsonValue>();
  for (const [key, value] of root) {
    let canon = key;
    if (key in LEGACY_KEYS) {
      canon = LEGACY_KEYS[key];
      note(`read legacy key "${key}" as "${canon}" (stored as "${canon}", the only spelling Kata accepts)`);
    } else if (!CANONICAL_KEYS.includes(key)) {
      const meant = CANONICAL_KEYS.find((k) => squash(k) === squash(key));
      if (meant) {
        throw bad(`unknown key "${key}": keys are case-sensitive and Kata ignores this one`, `spell it "${meant}"`);
      }
      note(`ignored unknown key "${key}" (Kata ignores it too; it is not stored)`);
      continue;
    }
    if (fields.has(canon)) {
      const other = [...root.keys()].filter((k) => k === canon || LEGACY_KEYS[k] === canon);
      throw bad(`key "${canon}" is given twice (${other.map((k) => `"${k}"`).join(' and ')})`, `keep only "${canon}"`);
    }
    fields.set(canon, value);
  }

  const requiredString = (key: string, example: string): string => {
    const v = fields.get(key);
    if (v === undefined) throw bad(`mount info has no "${key}"`, `add "${key}":${example}`);
    if (typeof v !== 'string') throw bad(`"${key}" must be a string, found ${describeJsonType(v)}`, `write "${key}":${example}`);
    if (v.includes('\0')) throw bad(`"${key}" ${JSON.stringify(v)} holds a NUL byte, which no path, type or mount option can`, `remove the \\u0000 from "${key}"`);
    return v;
  };

  const rawType = requiredString('volume-type', '"directvol"');
  if (!(VOLUME_TYPES as readonly string[]).includes(rawType)) {
    const meant = suggestVolumeType(rawType);
    const known = VOLUME_TYPES.join(', ');
    throw bad(
      `volume-type "${rawType}" is not a Kata volume type (${known}); runtime-rs would fail with: volume type "${rawType}" is invalid`,
      meant ? `did you mean "volume-type":"${meant}"?` : `use one of ${known}`,
    );
  }
  const device = requiredString('device', '"/dev/sdb"');
  const fsType = requiredString('fstype', '"ext4"');

  return {
    volumeType: rawType as VolumeType,
    device,
    fsType,
    metadata: readMetadata(fields.get('metadata'), bad, note),
    options: readOptions(fields.get('options'), bad),
  };
}

function readMetadata(
  v: JsonValue | undefined,
  bad: Bad,
  note: (s: string) => void,
): Record<string, string> {
  if (v === undefined || v === null) return {};
  let obj: JsonObject;
  if (typeof v === 'string') {
    // The how-to's `"metadata":"{}"`: a string holding a JSON object.
    let inner: JsonValue;
    try {
      inner = parseStrictJson(v);
    } catch (e) {
      throw bad(`"metadata" is a string that is not a JSON object (${messageOf(e)})`, 'write metadata as an object, e.g. "metadata":{"fsGroup":"1000"}', e);
    }
    if (!isJsonObject(inner)) throw bad(`"metadata" is a string holding ${describeJsonType(inner)}, not an object`, 'write metadata as an object, e.g. "metadata":{}');
    note('read "metadata" given as a JSON string as an object (stored as an object, which Kata requires)');
    obj = inner;
  } else if (isJsonObject(v)) {
    obj = v;
  } else {
    throw bad(`"metadata" must be an object of strings, found ${describeJsonType(v)}`, 'write e.g. "metadata":{"fsGroup":"1000"}');
  }
  const out: Record<string, string> = {};
  for (const [k, val] of obj) {
    if (typeof val !== 'string') {
      const shown = typeof val === 'number' || typeof val === 'boolean' ? JSON.stringify(String(val)) : '"..."';
      throw bad(`metadata "${k}" is ${describeJsonType(val)}; metadata values must be strings`, `quote it: "${k}":${shown}`);
    }
    // defineProperty keeps keys such as "__proto__" as ordinary data.
    Object.defineProperty(out, k, { value: val, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function readOptions(v: JsonValue | undefined, bad: Bad): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    const fix = typeof v === 'string' ? `write a list: "options":${JSON.stringify(v.split(',').filter(Boolean))}` : 'write a list of strings, e.g. "options":["ro"]';
    throw bad(`"options" must be a list of strings, found ${describeJsonType(v)}`, fix);
  }
  return v.map((o, i) => {
    if (typeof o !== 'string') throw bad(`"options"[${i}] is ${describeJsonType(o)}; options must be strings`, 'write e.g. "options":["ro","discard"]');
    if (o.includes('\0')) throw bad(`"options"[${i}] ${JSON.stringify(o)} holds a NUL byte, which no mount option can`, `remove the \\u0000 from "options"[${i}]`);
    return o;
  });
}

/** Canonical compact form: key order volume-type, device, fstype, metadata (keys in byte order), options; empties omitted. */
export function serializeMountInfo(info: MountInfo): string {
  const j = (s: string): string => JSON.stringify(s);
  let out = `{"volume-type":${j(info.volumeType)},"device":${j(info.device)},"fstype":${j(info.fsType)}`;
  const keys = Object.keys(info.metadata).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  if (keys.length) out += `,"metadata":{${keys.map((k) => `${j(k)}:${j(info.metadata[k])}`).join(',')}}`;
  if (info.options.length) out += `,"options":[${info.options.map(j).join(',')}]`;
  return out + '}';
}
