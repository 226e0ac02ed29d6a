// Drift test: our hand-written proto/ files must describe the same wire format as upstream.
// Messages/enums are compared through protobufjs reflection (fully-qualified types, labels, maps);
// services through @grpc/proto-loader, whose method `path` is exactly the "/service/method" pair a
// TTRPC Request carries, plus its normalised streaming flags.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as protobuf from 'protobufjs';
import * as protoLoader from '@grpc/proto-loader';

const REPO = findRepoRoot();
const OURS_DIR = path.join(REPO, 'proto');
const GOSRC = '/usr/share/gocode/src';
const CONTAINERD = 'github.com/containerd/containerd';
// Upstream imports "github.com/containerd/...", "gogoproto/gogo.proto", "google/protobuf/descriptor.proto"
// (gogo's copy) and "google/rpc/status.proto" (gogo/googleapis). google/protobuf/{any,empty,timestamp}
// always come from protobufjs's bundle, for ours and upstream alike.
const UPSTREAM_INCLUDES = [
  GOSRC,
  path.join(GOSRC, 'github.com/gogo/protobuf'),
  path.join(GOSRC, 'github.com/gogo/protobuf/protobuf'),
  path.join(GOSRC, 'github.com/gogo/googleapis'),
];

const OUR_FILES = [
  'ttrpc/request.proto',
  'google/rpc/status.proto',
  'containerd/task/v2/shim.proto',
  'containerd/task/v3/shim.proto',
  'containerd/types/mount.proto',
  'containerd/types/introspection.proto',
  'containerd/types/task/task.proto',
  'containerd/events/task.proto',
  'containerd/services/events/ttrpc/v1/events.proto',
];

// Each upstream file and which of our files must define the same types.
const UPSTREAM_PAIRS: Array<{ upstream: string; ours: string }> = [
  { upstream: `${CONTAINERD}/runtime/v2/task/shim.proto`, ours: 'containerd/task/v2/shim.proto' },
  { upstream: `${CONTAINERD}/api/types/mount.proto`, ours: 'containerd/types/mount.proto' },
  { upstream: `${CONTAINERD}/api/types/task/task.proto`, ours: 'containerd/types/task/task.proto' },
  { upstream: `${CONTAINERD}/api/events/task.proto`, ours: 'containerd/events/task.proto' },
  { upstream: `${CONTAINERD}/api/services/ttrpc/events/v1/events.proto`, ours: 'containerd/services/events/ttrpc/v1/events.proto' },
  { upstream: 'google/rpc/status.proto', ours: 'google/rpc/status.proto' },
];

// Upstream types katavol deliberately does not define (never on any wire katavol touches).
const UPSTREAM_OMITTED = new Set(['containerd.v1.types.Process']);

type FieldTable = Array<[name: string, id: number, type: string, rule: string]>;

// ttrpc 1.1.1 has no .proto for these: the Go structs in
// /usr/share/gocode/src/github.com/containerd/ttrpc/types.go carry the tags. Source lines:
const TTRPC_TABLES: Record<string, FieldTable> = {
  // types.go:25-31 `type Request struct` (service/method bytes,1/2; payload bytes,3; timeout_nano varint,4 int64; metadata bytes,5,rep)
  'ttrpc.Request': [
    ['service', 1, 'string', 'optional'],
    ['method', 2, 'string', 'optional'],
    ['payload', 3, 'bytes', 'optional'],
    ['timeout_nano', 4, 'int64', 'optional'],
    ['metadata', 5, 'ttrpc.KeyValue', 'repeated'],
  ],
  // types.go:37-40 `type Response struct` (status *spb.Status bytes,1; payload bytes,2)
  'ttrpc.Response': [
    ['status', 1, 'google.rpc.Status', 'optional'],
    ['payload', 2, 'bytes', 'optional'],
  ],
  // types.go:58-61 `type KeyValue struct`
  'ttrpc.KeyValue': [
    ['key', 1, 'string', 'optional'],
    ['value', 2, 'string', 'optional'],
  ],
};

// Not in containerd 1.6. Source: /work/shared/reference/shim-protocol.md §3 ("-info/RuntimeInfo: name=1;
// RuntimeVersion version=2 {version=1,revision=2}; Any options=3; Any features=4; map annotations=5") and
// containerd docs/runtime-v2.md "-info" (map<string, string> annotations = 5).
const INTROSPECTION_TABLES: Record<string, FieldTable> = {
  'containerd.types.RuntimeInfo': [
    ['name', 1, 'string', 'optional'],
    ['version', 2, 'containerd.types.RuntimeVersion', 'optional'],
    ['options', 3, 'google.protobuf.Any', 'optional'],
    ['features', 4, 'google.protobuf.Any', 'optional'],
    ['annotations', 5, 'string', 'map<string>'],
  ],
  'containerd.types.RuntimeVersion': [
    ['version', 1, 'string', 'optional'],
    ['revision', 2, 'string', 'optional'],
  ],
};

// ---- normalised shapes -------------------------------------------------------------------------

interface FieldShape { name: string; id: number; type: string; rule: string; oneof: string | null }
interface MethodShape { name: string; path: string; request: string; response: string; requestStream: boolean; responseStream: boolean }
type Shape =
  | { kind: 'message'; fields: FieldShape[]; nested: string[] }
  | { kind: 'enum'; values: Array<[string, number]> }
  | { kind: 'service'; methods: MethodShape[] };
/** Fully-qualified type name (no leading dot) -> shape. */
type Catalog = Map<string, Shape>;

function fqn(obj: protobuf.ReflectionObject): string {
  return obj.fullName.replace(/^\./, '');
}

function fieldShape(f: protobuf.Field): FieldShape {
  const type = f.resolvedType ? fqn(f.resolvedType) : f.type;
  let rule = f.repeated ? 'repeated' : 'optional';
  if (f instanceof protobuf.MapField) rule = `map<${f.keyType}>`;
  return { name: f.name, id: f.id, type, rule, oneof: f.partOf ? f.partOf.name : null };
}

/** Shapes of the messages/enums/services defined in `files` (by resolved filename) of a loaded root. */
function describeTypes(root: protobuf.Root, files: Set<string>, services: Map<string, MethodShape[]>): Catalog {
  const out: Catalog = new Map();
  const visit = (ns: protobuf.NamespaceBase): void => {
    for (const obj of ns.nestedArray) {
      const inFile = obj.filename !== null && files.has(obj.filename);
      if (obj instanceof protobuf.Type) {
        if (inFile) {
          const fields = obj.fieldsArray.map(fieldShape).sort((a, b) => a.id - b.id);
          out.set(fqn(obj), { kind: 'message', fields, nested: obj.nestedArray.map(fqn).sort() });
        }
      } else if (obj instanceof protobuf.Enum) {
        if (inFile) {
          const values = Object.entries(obj.values).sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]));
          out.set(fqn(obj), { kind: 'enum', values });
        }
      } else if (obj instanceof protobuf.Service) {
        if (inFile) {
          const methods = services.get(fqn(obj));
          if (!methods) throw new Error(`proto-loader did not report service ${fqn(obj)}`);
          out.set(fqn(obj), { kind: 'service', methods });
        }
      }
      if (obj instanceof protobuf.Namespace || obj instanceof protobuf.Type) visit(obj);
    }
  };
  visit(root);
  return out;
}

/**
 * Services as proto-loader normalises them. Request/response names come from the protobufjs root
 * (proto-loader's DescriptorProto only carries the short name), matched by method name.
 */
function describeServices(def: protoLoader.PackageDefinition, root: protobuf.Root): Map<string, MethodShape[]> {
  const out = new Map<string, MethodShape[]>();
  for (const [name, entry] of Object.entries(def)) {
    if ('format' in entry) continue; // a message or enum definition, not a service
    const svc = root.lookupService(name);
    const methods: MethodShape[] = [];
    for (const m of Object.values(entry)) {
      const methodName = m.path.split('/')[2];
      const reflected = svc.methods[methodName];
      if (!reflected) throw new Error(`${name}: proto-loader path ${m.path} has no protobufjs method`);
      reflected.resolve();
      methods.push({
        name: methodName,
        path: m.path,
        request: fqn(reflected.resolvedRequestType!),
        response: fqn(reflected.resolvedResponseType!),
        requestStream: m.requestStream,
        responseStream: m.responseStream,
      });
    }
    out.set(name, methods.sort((a, b) => a.name.localeCompare(b.name)));
  }
  return out;
}

interface Loaded { root: protobuf.Root; files: Map<string, string> /* as given -> resolved filename */; services: Map<string, MethodShape[]> }

function load(files: string[], includes: string[]): Loaded {
  const resolved = new Map<string, string>();
  const resolve = (target: string): string => {
    if (path.isAbsolute(target)) return target;
    for (const dir of includes) {
      const p = path.join(dir, target);
      if (fs.existsSync(p)) return p;
    }
    return target; // google/protobuf/*: protobufjs's bundled copy
  };
  for (const f of files) {
    const p = resolve(f);
    if (!fs.existsSync(p)) throw new Error(`proto file ${f} not found under ${includes.join(', ')}`);
    resolved.set(f, p);
  }
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolve(target);
  root.loadSync([...resolved.values()], { keepCase: true });
  root.resolveAll();
  const def = protoLoader.loadSync([...resolved.values()], { includeDirs: includes, keepCase: true });
  return { root, files: resolved, services: describeServices(def, root) };
}

// ---- comparison --------------------------------------------------------------------------------

function renderField(f: FieldShape): string {
  return `${f.rule} ${f.type} ${f.name} = ${f.id}${f.oneof ? ` (oneof ${f.oneof})` : ''}`;
}

function renderMethod(m: MethodShape): string {
  const s = (b: boolean) => (b ? 'stream ' : '');
  return `${m.path}(${s(m.requestStream)}${m.request}) returns (${s(m.responseStream)}${m.response})`;
}

/** Every difference between two shapes of the same type, as readable lines. */
function diffShape(name: string, ours: Shape, theirs: Shape): string[] {
  if (ours.kind !== theirs.kind) return [`${name}: ours is a ${ours.kind}, upstream a ${theirs.kind}`];
  const lines = (s: Shape): string[] => {
    switch (s.kind) {
      case 'message': return [...s.fields.map(renderField), ...s.nested.map((n) => `nested ${n}`)];
      case 'enum': return s.values.map(([k, v]) => `${k} = ${v}`);
      case 'service': return s.methods.map(renderMethod);
    }
  };
  const a = lines(ours);
  const b = lines(theirs);
  return [
    ...b.filter((l) => !a.includes(l)).map((l) => `${name}: upstream has "${l}", ours does not`),
    ...a.filter((l) => !b.includes(l)).map((l) => `${name}: ours has "${l}", upstream does not`),
  ];
}

/** Differences between catalogs; types only in `theirs` are reported unless listed in `omitted`. */
function diffCatalogs(ours: Catalog, theirs: Catalog, omitted: Set<string> = new Set()): string[] {
  const out: string[] = [];
  for (const [name, shape] of theirs) {
    const mine = ours.get(name);
    if (!mine) {
      if (!omitted.has(name)) out.push(`${name}: defined upstream, missing from ours`);
      continue;
    }
    out.push(...diffShape(name, mine, shape));
  }
  for (const name of ours.keys()) if (!theirs.has(name)) out.push(`${name}: ours only, not upstream`);
  return out;
}

function catalogFromTables(tables: Record<string, FieldTable>): Catalog {
  const out: Catalog = new Map();
  for (const [name, rows] of Object.entries(tables)) {
    const fields = rows.map(([fname, id, type, rule]) => ({ name: fname, id, type, rule, oneof: null }));
    out.set(name, { kind: 'message', fields, nested: [] });
  }
  return out;
}

/** Rename package prefix `from` to `to` in type names and in every type reference. */
function swapPackage(cat: Catalog, from: string, to: string): Catalog {
  const sw = (s: string) => (s.startsWith(`${from}.`) ? to + s.slice(from.length) : s);
  const out: Catalog = new Map();
  for (const [name, shape] of cat) {
    let copy: Shape;
    switch (shape.kind) {
      case 'message':
        copy = { kind: 'message', fields: shape.fields.map((f) => ({ ...f, type: sw(f.type) })), nested: shape.nested.map(sw) };
        break;
      case 'enum':
        copy = shape;
        break;
      case 'service':
        copy = {
          kind: 'service',
          methods: shape.methods.map((m) => ({
            ...m,
            path: m.path.replace(`/${from}.`, `/${to}.`),
            request: sw(m.request),
            response: sw(m.response),
          })),
        };
        break;
    }
    out.set(sw(name), copy);
  }
  return out;
}

function findRepoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'proto', 'README.md')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`cannot find the katavol repo root (with proto/README.md) above ${__dirname}`);
}

// ---- tests -------------------------------------------------------------------------------------

describe('proto descriptors vs upstream', function () {
  let ours: Loaded;
  let upstream: Loaded;
  /** Our catalog restricted to one of our files. */
  const oursFor = (file: string) => describeTypes(ours.root, new Set([ours.files.get(file)!]), ours.services);
  const upstreamFor = (file: string) => describeTypes(upstream.root, new Set([upstream.files.get(file)!]), upstream.services);

  before(function () {
    for (const { upstream: f } of UPSTREAM_PAIRS) {
      const found = UPSTREAM_INCLUDES.some((d) => fs.existsSync(path.join(d, f)));
      if (!found) {
        throw new Error(`upstream proto ${f} is missing under ${UPSTREAM_INCLUDES.join(', ')}: ` +
          'install golang-github-containerd-containerd-dev (it pulls in golang-github-gogo-protobuf-dev and ' +
          'golang-github-gogo-googleapis-dev; make deps does)');
      }
    }
    ours = load(OUR_FILES, [OURS_DIR]);
    upstream = load(UPSTREAM_PAIRS.map((p) => p.upstream), UPSTREAM_INCLUDES);
  });

  for (const pair of UPSTREAM_PAIRS) {
    it(`${pair.ours} matches upstream ${pair.upstream}`, function () {
      const theirs = upstreamFor(pair.upstream);
      assert.ok(theirs.size > 0, `nothing loaded from upstream ${pair.upstream}`);
      assert.deepEqual(diffCatalogs(oursFor(pair.ours), theirs, UPSTREAM_OMITTED), []);
    });
  }

  it('containerd/task/v3/shim.proto matches upstream v2 with the package swapped', function () {
    const theirs = swapPackage(upstreamFor(UPSTREAM_PAIRS[0].upstream), 'containerd.task.v2', 'containerd.task.v3');
    const mine = oursFor('containerd/task/v3/shim.proto');
    assert.ok(mine.has('containerd.task.v3.Task'));
    assert.deepEqual(diffCatalogs(mine, theirs), []);
  });

  it('the Task service has all 17 unary RPCs on the wire paths containerd calls', function () {
    for (const v of ['v2', 'v3']) {
      const svc = ours.services.get(`containerd.task.${v}.Task`);
      assert.ok(svc, `containerd.task.${v}.Task not loaded`);
      assert.equal(svc.length, 17);
      assert.ok(svc.every((m) => !m.requestStream && !m.responseStream));
      assert.ok(svc.some((m) => m.path === `/containerd.task.${v}.Task/Shutdown` && m.response === 'google.protobuf.Empty'));
    }
  });

  it('ttrpc Request/Response/KeyValue match ttrpc 1.1.1 types.go', function () {
    assert.deepEqual(diffCatalogs(oursFor('ttrpc/request.proto'), catalogFromTables(TTRPC_TABLES)), []);
  });

  it('RuntimeInfo/RuntimeVersion match the documented -info message', function () {
    assert.deepEqual(diffCatalogs(oursFor('containerd/types/introspection.proto'), catalogFromTables(INTROSPECTION_TABLES)), []);
  });

  it('every type we define is checked by one of the comparisons above', function () {
    const checked = new Set<string>([...Object.keys(TTRPC_TABLES), ...Object.keys(INTROSPECTION_TABLES)]);
    for (const pair of UPSTREAM_PAIRS) for (const n of upstreamFor(pair.upstream).keys()) checked.add(n);
    for (const n of upstreamFor(UPSTREAM_PAIRS[0].upstream).keys()) checked.add(n.replace('containerd.task.v2.', 'containerd.task.v3.'));
    const all = describeTypes(ours.root, new Set(ours.files.values()), ours.services);
    assert.deepEqual([...all.keys()].filter((n) => !checked.has(n)), []);
  });

  describe('the comparator detects drift', function () {
    // Each case mutates a freshly loaded copy of ours and must produce exactly the reported lines.
    const cases: Array<{ what: string; mutate(root: protobuf.Root): void; expect: RegExp }> = [
      {
        what: 'a wrong field number',
        mutate: (r) => { r.lookupType('containerd.task.v2.KillRequest').fields.signal.id = 5; },
        expect: /containerd\.task\.v2\.KillRequest: .*uint32 signal = 3/,
      },
      {
        what: 'a wrong scalar type',
        mutate: (r) => { r.lookupType('containerd.task.v2.ConnectResponse').fields.shim_pid.type = 'int32'; },
        expect: /ConnectResponse: ours has "optional int32 shim_pid = 1"/,
      },
      {
        what: 'a lost repeated label',
        mutate: (r) => { r.lookupType('containerd.task.v2.CreateTaskRequest').fields.rootfs.repeated = false; },
        expect: /CreateTaskRequest: upstream has "repeated containerd\.types\.Mount rootfs = 3"/,
      },
      {
        what: 'a renamed field',
        mutate: (r) => {
          const t = r.lookupType('containerd.events.TaskExit');
          const f = t.fields.exit_status;
          t.remove(f);
          t.add(new protobuf.Field('exitstatus', f.id, f.type));
        },
        expect: /TaskExit: upstream has "optional uint32 exit_status = 4"/,
      },
      {
        what: 'a missing message',
        mutate: (r) => { const t = r.lookupType('containerd.task.v2.PauseRequest'); t.parent!.remove(t); },
        expect: /containerd\.task\.v2\.PauseRequest: defined upstream, missing from ours/,
      },
      {
        what: 'a changed enum value',
        mutate: (r) => { r.lookupEnum('containerd.v1.types.Status').values.PAUSING = 6; },
        expect: /containerd\.v1\.types\.Status: upstream has "PAUSING = 5"/,
      },
    ];
    for (const c of cases) {
      it(`reports ${c.what}`, function () {
        const copy = load(OUR_FILES, [OURS_DIR]);
        c.mutate(copy.root);
        const all = new Set(copy.files.values());
        const theirs = new Map<string, Shape>();
        for (const pair of UPSTREAM_PAIRS) for (const [k, v] of upstreamFor(pair.upstream)) theirs.set(k, v);
        const mine = describeTypes(copy.root, all, copy.services);
        const relevant = new Map([...mine].filter(([k]) => theirs.has(k) || k.startsWith('containerd.task.v2.')));
        const diffs = diffCatalogs(relevant, theirs, UPSTREAM_OMITTED);
        assert.ok(diffs.some((d) => c.expect.test(d)), `expected a diff matching ${c.expect}, got ${JSON.stringify(diffs)}`);
      });
    }

    it('reports a changed method signature or streaming flag', function () {
      const theirs = upstreamFor(UPSTREAM_PAIRS[0].upstream);
      const mine = new Map(theirs);
      const svc = mine.get('containerd.task.v2.Task');
      assert.ok(svc && svc.kind === 'service');
      mine.set('containerd.task.v2.Task', {
        kind: 'service',
        methods: svc.methods.map((m) => (m.name === 'Wait' ? { ...m, responseStream: true } : m.name === 'Kill' ? { ...m, request: 'containerd.task.v2.StateRequest' } : m)),
      });
      const diffs = diffCatalogs(mine, theirs);
      assert.ok(diffs.some((d) => /Task\/Wait\(containerd\.task\.v2\.WaitRequest\) returns \(stream /.test(d)), JSON.stringify(diffs));
      assert.ok(diffs.some((d) => /ours has ".*Task\/Kill\(containerd\.task\.v2\.StateRequest\)/.test(d)), JSON.stringify(diffs));
    });

    it('reports a map turned into a plain field against the explicit tables', function () {
      const copy = load(OUR_FILES, [OURS_DIR]);
      const t = copy.root.lookupType('containerd.types.RuntimeInfo');
      t.remove(t.fields.annotations);
      t.add(new protobuf.Field('annotations', 5, 'string', 'repeated'));
      const diffs = diffCatalogs(describeTypes(copy.root, new Set([copy.files.get('containerd/types/introspection.proto')!]), copy.services),
        catalogFromTables(INTROSPECTION_TABLES));
      assert.ok(diffs.some((d) => /RuntimeInfo: upstream has "map<string> string annotations = 5"/.test(d)), JSON.stringify(diffs));
    });
  });
});
