// The structure-aware generator of hostile Create inputs for test/shim/create-fuzz.test.ts: an OCI spec
// (config.json) and the mountInfo.json of a registered volume, each built from a valid one and then
// broken the ways a hostile or broken tool breaks them: a wrong type at any key, huge strings, deep
// nesting, NUL bytes, duplicate keys, `..` paths, prototype keys, and FIFOs, sockets, symbolic links or
// directories where a file belongs. Case n of seed s is generated from its own PRNG, so one case replays alone.
import { prng } from '../support/ttrpc';
import { type Rnd, int, pick } from '../support/fuzz-gen';

/** Something other than text where a file belongs. */
export type OddFile = 'fifo' | 'socket' | 'symlink' | 'dir' | 'missing' | 'huge';

/** A file's text, or something odd in its place. */
export type FileInput = { text: string } | { odd: OddFile };

export interface CreateCase {
  /** config.json. */
  spec: FileInput;
  /** The mountInfo.json of /kubelet/hostile. */
  mountInfo: FileInput;
  /** The entry directory of /kubelet/hostile replaced by a symbolic link or a file. */
  entry?: 'symlink' | 'file';
}

/** Registered volumes the scratch registry holds (see create-fuzz.test.ts). */
export const VOLUMES = ['/kubelet/rw', '/kubelet/ro', '/kubelet/spdk', '/kubelet/vfio', '/kubelet/used', '/kubelet/hostile'];
/** Paths in the scratch directory: $IMG an ext4 image, and odd files where a device may be named. */
export const DEVICE_TARGETS = ['$IMG', '$DIR/fifo', '$DIR/sock', '$DIR/link.img', '$DIR', '/dev/null', '$DIR/none.img', '$DIR/../$NAME/disk.img', 'disk.img', '/dev/zero', ''];

type J = null | boolean | number | string | J[] | { [k: string]: J };

const HUGE = (rnd: Rnd): string => pick(rnd, ['a', '/', '\u0000', 'é', '\\']).repeat(pick(rnd, [300, 5000, 70000, 300000]));

/** A JSON value of a random type (and sometimes a hostile one). */
function anyValue(rnd: Rnd, depth = 0): J {
  const r = int(rnd, 14);
  switch (r) {
    case 0: return null;
    case 1: return rnd() < 0.5;
    case 2: return pick(rnd, [0, -1, 1e308, -0, 4294967297, 1.5]);
    case 3: return '';
    case 4: return HUGE(rnd);
    case 5: return `a\u0000b`;
    case 6: return pick(rnd, ['..', '../../etc/passwd', '/kubelet/../kubelet/rw', '/kubelet/rw/..', '/kubelet/./rw', '//kubelet//rw']);
    case 7: return depth < 3 ? [anyValue(rnd, depth + 1), anyValue(rnd, depth + 1)] : [];
    case 8: return depth < 3 ? { [pick(rnd, ['__proto__', 'constructor', 'toString', 'a', ''])]: anyValue(rnd, depth + 1) } : {};
    case 9: return pick(rnd, VOLUMES);
    case 10: return pick(rnd, DEVICE_TARGETS);
    case 11: return pick(rnd, ['directvol', 'vfiovol', 'spdkvol', 'spoolvol', 'bind', 'none', 'directvolume', 'DIRECTVOL', 'ext4']);
    case 12: return ['rbind', pick(rnd, ['rw', 'ro', 'ro\u0000', ''])];
    default: return pick(rnd, ['{}', '[]', '{"a":', 'null']);
  }
}

/** A marker the serialiser replaces by n levels of nesting (the tree itself stays shallow, so walking it is cheap). */
const deep = (rnd: Rnd, n: number): string => `@@DEEP${rnd() < 0.5 ? 'A' : 'O'}${n}@@`;

/** Expands the deep-nesting markers in a JSON text: [[[...0...]]] or {"d":{"d":...0...}}. */
function expandDeep(text: string): string {
  return text.replace(/"@@DEEP([AO])([0-9]+)@@"/g, (_m, kind: string, n: string) =>
    kind === 'A' ? `${'['.repeat(Number(n))}0${']'.repeat(Number(n))}` : `${'{"d":'.repeat(Number(n))}0${'}'.repeat(Number(n))}`);
}

function directMount(rnd: Rnd): { [k: string]: J } {
  return {
    destination: pick(rnd, ['/disk', '/data', '/d/../e', '', 'relative']),
    type: pick(rnd, ['directvol', 'directvol', 'directvol', 'vfiovol', 'spdkvol', 'bind', 'none']),
    source: pick(rnd, VOLUMES),
    options: pick(rnd, [['rbind', 'rw'], ['rbind', 'ro'], ['bind'], []] as J[]),
  };
}

function validSpec(rnd: Rnd): { [k: string]: J } {
  const mounts: J[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  ];
  for (let i = 0, n = 1 + int(rnd, 3); i < n; i++) mounts.push(directMount(rnd));
  const annotations: { [k: string]: J } = {};
  if (rnd() < 0.5) annotations['io.kubernetes.cri.sandbox-id'] = pick(rnd, ['pod-a', 'pod-b', 'c1', '', '../x', 'a\u0000b']);
  return { ociVersion: '1.1.0', process: { args: ['sh'], cwd: '/' }, root: { path: 'rootfs' }, annotations, mounts };
}

/** Every path (list of keys) to a node of a JSON tree, so a mutation can hit any key. */
function paths(v: J, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix);
  if (Array.isArray(v)) v.forEach((c, i) => paths(c, [...prefix, i], out));
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) paths(v[k], [...prefix, k], out);
  return out;
}

function setAt(root: J, at: Array<string | number>, value: J): J {
  if (at.length === 0) return value;
  let node = root as { [k: string]: J } | J[];
  for (const k of at.slice(0, -1)) node = (node as Record<string, J>)[k] as { [k: string]: J };
  Object.defineProperty(node, at[at.length - 1], { value, enumerable: true, writable: true, configurable: true });
  return root;
}

/** 1..4 mutations of a valid tree: a wrong-typed, huge, NUL-carrying, dotted, deep or prototype value anywhere. */
function mutate(rnd: Rnd, tree: J): J {
  let t = tree;
  for (let m = 0, n = 1 + int(rnd, 4); m < n; m++) {
    const all = paths(t);
    const at = pick(rnd, all);
    const r = rnd();
    if (r < 0.7) t = setAt(t, at, anyValue(rnd));
    else if (r < 0.8) t = setAt(t, at, deep(rnd, pick(rnd, [50, 127, 128, 129, 600, 20000, 200000])));
    else if (r < 0.9 && at.length > 0) {
      // A key renamed: case, legacy spelling, prototype names.
      const parent = at.slice(0, -1);
      const key = at[at.length - 1];
      let node: J = t;
      for (const k of parent) node = (node as Record<string, J>)[k];
      if (node && typeof node === 'object' && !Array.isArray(node) && typeof key === 'string') {
        const v = node[key];
        delete node[key];
        Object.defineProperty(node, pick(rnd, [key.toUpperCase(), key.replace('-', '_'), '__proto__', `${key} `, 'constructor']), { value: v, enumerable: true, writable: true, configurable: true });
      }
    } else t = setAt(t, at, pick(rnd, [[], {}, null]));
  }
  return t;
}

/** Serialises, sometimes repeating a key (a duplicate the JSON text carries but no object can). */
function serialise(rnd: Rnd, v: J): string {
  let text = JSON.stringify(v) ?? 'null';
  if (rnd() < 0.15 && v && typeof v === 'object' && !Array.isArray(v)) {
    const keys = Object.keys(v);
    if (keys.length) {
      const k = pick(rnd, keys);
      text = `{${JSON.stringify(k)}:${JSON.stringify(anyValue(rnd)) ?? 'null'},${text.slice(1)}`;
    }
  }
  text = expandDeep(text);
  if (rnd() < 0.03) text = text.slice(0, int(rnd, text.length)); // truncated
  return text;
}

function mountInfoOf(rnd: Rnd): FileInput {
  if (rnd() < 0.1) return { odd: pick(rnd, ['fifo', 'socket', 'symlink', 'dir', 'missing', 'huge'] as const) };
  const mi: { [k: string]: J } = {
    'volume-type': pick(rnd, ['directvol', 'directvol', 'spdkvol', 'vfiovol', 'spoolvol']),
    device: pick(rnd, DEVICE_TARGETS),
    fstype: pick(rnd, ['ext4', 'xfs', '', 'ext4\u0000']),
  };
  if (rnd() < 0.3) mi.metadata = { fsGroup: '1000' };
  if (rnd() < 0.3) mi.options = ['ro'];
  return { text: serialise(rnd, rnd() < 0.7 ? mutate(rnd, mi) : mi) };
}

export function createCase(seed: number, n: number): CreateCase {
  // Each case from its own stream, so KATAVOL_FUZZ_CASE=n replays it alone.
  const rnd = prng((seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
  const spec: FileInput = rnd() < 0.05 ? { odd: pick(rnd, ['fifo', 'socket', 'symlink', 'dir', 'missing', 'huge'] as const) } : { text: serialise(rnd, rnd() < 0.85 ? mutate(rnd, validSpec(rnd)) : validSpec(rnd)) };
  const c: CreateCase = { spec, mountInfo: mountInfoOf(rnd) };
  if (rnd() < 0.03) c.entry = pick(rnd, ['symlink', 'file'] as const);
  return c;
}
