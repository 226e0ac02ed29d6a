// The bad-input catalogue: what katavol refuses, through which path, with which words, and why. One
// table serves twice: test/refusals/refusals.test.ts runs every row through the real code path (bin/katavol,
// the shim's start, the Create interceptor, a ttrpc server, the shim proxy) and checks the error fragment
// and that nothing changed; renderRefusals() turns the same rows into docs/refusals.md (`make refusals-doc`),
// and the test fails when the committed doc differs. Placeholders, replaced by the test's scratch paths:
// $IMG an ext4 image, $DIR the scratch directory, $ROOT the registry root, $BUNDLE the bundle, $CFG the
// shim config file, $SELF the shim launcher (bin/containerd-shim-katavol-v2).
//
// The registry every row starts from: /kubelet/ok (directvol $IMG ext4, no user), /kubelet/used (the
// same image, recorded as used by sandbox pod-a) and /kubelet/hand (its mountInfo.json is the row's).

export type Area = 'CLI arguments' | 'mountInfo.json' | 'shim config' | 'OCI spec' | 'TTRPC frame' | 'environment';

/** What a mountInfo.json (of /kubelet/hand) or a config.json (of the bundle) is, when not text. */
export type Odd = { fifo: true } | { socket: true } | { symlinkTo: string } | { dir: true } | { missing: true } | { bytes: number };

/** A frame for a ttrpc server (service refusals.v1.Svc, methods Echo) or the shim proxy. */
export interface FrameInput {
  streamId: number;
  type?: number;
  flags?: number;
  /** A request: service, method, payload (hex), timeout. */
  request?: { service: string; method: string; payloadHex?: string; timeoutNano?: number };
  /** A task Create request for the proxy: container id and bundle ($BUNDLE). */
  create?: { id: string; bundle: string };
  /** Raw body bytes (hex). */
  bodyHex?: string;
  /** A body of this many zero bytes (over the 4 MiB limit). */
  zeroBytes?: number;
}

export type Via =
  /** bin/katavol with $KATAVOL_VOLUME_ROOT=$ROOT, cwd $DIR; `exit` is its status. */
  | { cli: string[]; exit: 1 | 2; env?: Record<string, string> }
  /** containerd-shim-katavol-v2 start (the Node entry, as the launcher's cold path runs it), cwd $BUNDLE. */
  | { shimStart: true; config?: string; env?: Record<string, string> }
  /** The Create interceptor (runtime-rs backend) on $BUNDLE, whose config.json is `spec` (text or odd). */
  | { create: string | Odd; mountInfo?: string | Odd }
  /** Raw frames on a connection to a ttrpc Server, or to the shim proxy in front of a recording downstream. */
  | { frames: FrameInput[]; to: 'server' | 'proxy' };

export interface Row {
  area: Area;
  /** The input as a reader sees it (defaults: the command line, the file's content). */
  input?: string;
  via: Via;
  /** The exact fragment of the error (placeholders allowed). */
  error: string;
  /** Why katavol refuses it. */
  why: string;
}

const MI = (device: string, rest = ''): string => `{"volume-type":"directvol","device":"${device}","fstype":"ext4"${rest}}`;
const OK_MI = MI('$IMG');
const add = (json: string, volume = '/kubelet/v1'): Via => ({ cli: ['direct-volume', 'add', volume, json], exit: 1 });
const spec = (mounts: unknown[], extra: Record<string, unknown> = {}): string => JSON.stringify({ ociVersion: '1.1.0', ...extra, mounts });
const dvol = (source: unknown, more: Record<string, unknown> = {}) => ({ destination: '/disk', type: 'directvol', source, options: ['rbind', 'rw'], ...more });
const HAND = spec([dvol('/kubelet/hand')]);
const cfg = (text: string): Via => ({ shimStart: true, config: text });

export const ROWS: Row[] = [
  // ---- CLI arguments -------------------------------------------------------------------------------
  { area: 'CLI arguments', via: { cli: ['frob'], exit: 2 }, error: 'katavol: unknown command "frob"', why: 'not a command; the usage follows' },
  { area: 'CLI arguments', via: { cli: ['add', '/kubelet/v1', OK_MI], exit: 2 }, error: 'unknown command "add"; did you mean "katavol direct-volume add"?', why: 'kata-ctl users type the subcommand without "direct-volume"' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'frob'], exit: 2 }, error: 'unknown direct-volume command "frob"', why: 'not a direct-volume command' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'add'], exit: 2 }, error: 'katavol: missing the volume path', why: 'add needs the volume path and the mount info' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'add', '/kubelet/v1'], exit: 2 }, error: 'katavol: missing the mount info JSON', why: 'add needs the mount info' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'add', '--bogus', '/kubelet/v1', OK_MI], exit: 2 }, error: 'unknown option --bogus (put "--" before a volume path that starts with "-")', why: 'an option no command takes; a path starting with "-" needs "--"' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'add', '--volume-path', '/a', '--volume-path', '/b', OK_MI], exit: 2 }, error: '--volume-path given twice', why: 'two values for one flag: which one was meant is not known' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'add', '--force=yes', '/kubelet/v1', OK_MI], exit: 2 }, error: '--force takes no value', why: 'a switch given a value is a typo' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'add', OK_MI, '/kubelet/v1'], exit: 2 }, error: 'the arguments look swapped', why: 'the JSON came first: the volume path comes first' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'add', '/kubelet/v1', OK_MI, 'extra'], exit: 2 }, error: 'unexpected argument "extra"', why: 'more arguments than add takes' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'resize', '/kubelet/ok', 'ten'], exit: 2 }, error: 'size "ten" is not a byte count (e.g. 1073741824, 10G, 512MiB)', why: 'a size must be bytes or a number with K/M/G/T/P' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'resize', '/kubelet/ok', '1K'], exit: 1 }, error: 'katavol never shrinks a volume', why: 'shrinking would cut the filesystem' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'remove', '/kubelet/none'], exit: 1 }, error: 'volume "/kubelet/none": is not registered (no registry entry)', why: 'nothing to remove; the message gives the add command' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'remove', '/kubelet/used'], exit: 1 }, error: 'volume "/kubelet/used": is recorded as used by sandbox pod-a', why: 'removing a volume under a running sandbox; --force overrides for a stale record' },
  { area: 'CLI arguments', via: add(MI('$DIR/other.img'), '/kubelet/used'), error: 'is recorded as used by sandbox pod-a', why: 'replacing the entry under a running sandbox would change its disk' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'add', '', OK_MI], exit: 1 }, error: 'katavol: the volume path is empty', why: 'a volume is named by the path containers mount it from' },
  { area: 'CLI arguments', input: 'katavol direct-volume add /kubelet/<300 × a> \'...\'', via: add(OK_MI, `/kubelet/${'a'.repeat(300)}`), error: 'over the 255-byte file name limit (Kata fails with "File name too long"', why: 'its base64 directory name could not be created (Kata issue #10284)' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'inspect', '/kubelet/none'], exit: 1 }, error: 'volume "/kubelet/none": is not registered (no registry entry)', why: 'nothing to inspect' },
  { area: 'CLI arguments', via: { cli: ['direct-volume', 'list', 'extra'], exit: 2 }, error: 'unexpected argument "extra"', why: 'list takes no volume' },
  { area: 'CLI arguments', via: { cli: ['config', 'chek'], exit: 2 }, error: 'unknown config command "chek"; did you mean "check"?', why: 'a typo of check' },

  // ---- mountInfo.json, as given to `add` -------------------------------------------------------------
  { area: 'mountInfo.json', via: add('{"volume-type":"directvol",'), error: 'mount info is not valid JSON: expected a quoted key, found end of input at character 28', why: 'Kata would fail to parse it at every start' },
  { area: 'mountInfo.json', input: '{"volume-type":"directvol","device":"$IMG","fstype":"ext4","metadata":[[[… 200 levels …]]]}', via: add(MI('$IMG', `,"metadata":${'['.repeat(200)}${']'.repeat(200)}`)), error: 'mount info is not valid JSON: nested deeper than 128 levels (serde_json, which Kata uses, stops there)', why: 'found by the Create fuzz: the parser overflowed the stack (RangeError)' },
  { area: 'mountInfo.json', via: add('[]'), error: 'mount info must be a JSON object, found an array', why: 'mountInfo.json is one object' },
  { area: 'mountInfo.json', via: add(MI('$IMG', ',"device":"/dev/sdb"')), error: 'mount info is not valid JSON: duplicate key "device"', why: 'JSON.parse keeps the last, serde the first: which disk is meant is not known' },
  { area: 'mountInfo.json', via: add('{"volume_type":"directvol","volume-type":"directvol","device":"$IMG","fstype":"ext4"}'), error: 'key "volume-type" is given twice ("volume_type" and "volume-type")', why: 'the legacy and the canonical spelling of one key' },
  { area: 'mountInfo.json', via: add('{"volume-type":"directvol","Device":"$IMG","fstype":"ext4"}'), error: 'unknown key "Device": keys are case-sensitive and Kata ignores this one; spell it "device"', why: 'Kata would ignore the key and find no device' },
  { area: 'mountInfo.json', via: add('{"volume-type":"directvol","fstype":"ext4"}'), error: 'mount info has no "device"', why: 'nothing to attach' },
  { area: 'mountInfo.json', via: add('{"volume-type":"directvol","device":5,"fstype":"ext4"}'), error: '"device" must be a string, found a number 5', why: 'Kata reads a string' },
  { area: 'mountInfo.json', via: add('{"volume-type":"block","device":"$IMG","fstype":"ext4"}'), error: 'volume-type "block" is not a Kata volume type (directvol, vfiovol, spdkvol, spoolvol); runtime-rs would fail with: volume type "block" is invalid; did you mean "volume-type":"directvol"?', why: 'runtime-rs knows four types' },
  { area: 'mountInfo.json', via: add(MI('$IMG', ',"metadata":{"fsGroup":1000}')), error: 'metadata "fsGroup" is a number 1000; metadata values must be strings; quote it: "fsGroup":"1000"', why: 'Kata\'s metadata is a map of strings' },
  { area: 'mountInfo.json', via: add(MI('$IMG', ',"metadata":"{not json"')), error: '"metadata" is a string that is not a JSON object', why: 'the legacy string form must hold an object' },
  { area: 'mountInfo.json', via: add(MI('$IMG', ',"options":"ro"')), error: '"options" must be a list of strings, found a string "ro"; write a list: "options":["ro"]', why: 'Kata reads a list' },
  { area: 'mountInfo.json', via: add(MI('$IMG', ',"options":["ro",1]')), error: '"options"[1] is a number 1; options must be strings', why: 'mount options are strings' },
  { area: 'mountInfo.json', via: add(MI('/dev/sdb\\u0000x')), error: '"device" "/dev/sdb\\u0000x" holds a NUL byte, which no path, type or mount option can', why: 'the kernel would see a shorter path than the one registered' },
  { area: 'mountInfo.json', via: add('{"volume-type":"directvol","device":"$IMG","fstype":""}'), error: '"fstype" is empty (the guest could not mount the volume)', why: 'the guest mounts it with this type' },
  { area: 'mountInfo.json', via: add('{"volume-type":"directvol","device":"$IMG","fstype":"ext5"}'), error: 'fstype "ext5" is not a filesystem Linux knows', why: 'no kernel could mount it' },
  { area: 'mountInfo.json', via: add('{"volume-type":"directvol","device":"$IMG","fstype":"xfs"}'), error: 'declares fstype "xfs" but device $IMG holds ext4', why: 'the mount would fail with "wrong fs type" inside the guest' },
  { area: 'mountInfo.json', via: add(MI('disk.img')), error: 'device "disk.img" is a relative path (the runtime resolves it from its own directory)', why: 'the shim runs elsewhere than the CLI' },
  { area: 'mountInfo.json', via: add(MI('$DIR/none.img')), error: 'device "$DIR/none.img" does not exist', why: 'nothing to attach; the message says how to create an image' },
  { area: 'mountInfo.json', via: add(MI('$DIR')), error: 'device "$DIR" is a directory; a directvol device must be a regular file (disk image) or a block device', why: 'a directory cannot be a disk' },
  { area: 'mountInfo.json', via: add(MI('/dev/null')), error: 'device "/dev/null" is a character device', why: 'a character device cannot be a disk' },
  { area: 'mountInfo.json', via: add(MI('$DIR/fifo')), error: 'device "$DIR/fifo" is a FIFO', why: 'a FIFO cannot be a disk (and reading it would block)' },
  { area: 'mountInfo.json', via: add('{"volume-type":"vfiovol","device":"zz:zz","fstype":"ext4"}'), error: 'device "zz:zz" is not a PCI address (BB:DD.F or DDDD:BB:DD.F) or a VFIO group (/dev/vfio/N)', why: 'vfiovol names a PCI function or a VFIO group' },
  { area: 'mountInfo.json', via: add('{"volume-type":"spdkvol","device":"vhost.0","fstype":"ext4"}'), error: 'device "vhost.0" is not an absolute socket path', why: 'spdkvol names the vhost-user socket' },

  // ---- mountInfo.json, as found in the registry at Create (written by hand or by another tool) --------
  { area: 'mountInfo.json', input: '\\u0000\\u0001garbage', via: { create: HAND, mountInfo: '\u0000\u0001garbage' }, error: 'volume "/kubelet/hand": stored mount info is not valid JSON', why: 'runtime-rs would fail the container with a parse error naming no file' },
  { area: 'mountInfo.json', via: { create: HAND, mountInfo: '{"volume-type":"directvol","device":"$IMG","fstype":"ext4","metadata":{"a":1}}' }, error: 'stored metadata "a" is a number 1; metadata values must be strings', why: 'runtime-rs would fail to deserialize it' },
  { area: 'mountInfo.json', input: 'a FIFO', via: { create: HAND, mountInfo: { fifo: true } }, error: 'mountInfo.json is a FIFO, not a regular file', why: 'reading it would block Create (and the daemon) forever' },
  { area: 'mountInfo.json', input: 'a unix socket', via: { create: HAND, mountInfo: { socket: true } }, error: 'mountInfo.json is a unix socket, not a regular file', why: 'not a file' },
  { area: 'mountInfo.json', input: 'a symbolic link to $IMG', via: { create: HAND, mountInfo: { symlinkTo: '$IMG' } }, error: 'mountInfo.json is a symbolic link; katavol does not follow links here', why: 'a link could point the shim at any file on the host' },
  { area: 'mountInfo.json', input: 'a directory', via: { create: HAND, mountInfo: { dir: true } }, error: 'mountInfo.json is a directory, not a regular file', why: 'not a file' },
  { area: 'mountInfo.json', input: '1 MiB + 1 byte', via: { create: HAND, mountInfo: { bytes: (1 << 20) + 1 } }, error: 'mountInfo.json is 1048577 bytes, more than the 1048576 katavol reads from it', why: 'a real one is under 1 KiB; the daemon\'s heap is capped' },
  { area: 'mountInfo.json', input: 'absent (an entry directory without it)', via: { create: HAND, mountInfo: { missing: true } }, error: 'the registry entry has no mountInfo.json (an incomplete entry', why: 'e.g. left by a failed kata-ctl add; Kata fails every container using it' },
  { area: 'mountInfo.json', via: { create: HAND, mountInfo: MI('$DIR/none.img') }, error: 'mount /disk: directvol device $DIR/none.img does not exist', why: 'the disk went away after registration' },

  // ---- shim config ($KATAVOL_CONFIG), read by every `start` ------------------------------------------
  { area: 'shim config', via: cfg('{"backend":'), error: 'katavol config $CFG: not valid JSON', why: 'the shim cannot start with a config it cannot read' },
  { area: 'shim config', via: cfg('["runc"]'), error: 'katavol config $CFG: must be a JSON object like {"backend":"runc"}', why: 'the config is one object' },
  { area: 'shim config', via: cfg('{"backends":"runc"}'), error: 'key "backends": unknown key; known keys are backend, downstream, volumeRoot', why: 'a misspelt key would silently be ignored' },
  { area: 'shim config', via: cfg('{"backend":"kata"}'), error: 'key "backend": "kata" is not a backend; use one of runtime-rs, runc', why: 'two backends exist' },
  { area: 'shim config', via: cfg('{"backend":5}'), error: 'key "backend": must be a non-empty string, got 5', why: 'wrong type' },
  { area: 'shim config', via: cfg('{"logLevel":"verbose"}'), error: 'key "logLevel": "verbose" is not a level; use one of error, warn, info, debug', why: 'winston levels' },
  { area: 'shim config', via: cfg('{"logFormat":"xml"}'), error: 'key "logFormat": "xml" is not a log format; use "text" (containerd\'s logrus format) or "json"', why: 'two formats exist' },
  { area: 'shim config', via: cfg('{"volumeRoot":"volumes"}'), error: 'key "volumeRoot": must be an absolute path, got "volumes"', why: 'the shim runs in each bundle\'s directory' },
  { area: 'shim config', via: cfg('{"socketDir":"run/katavol"}'), error: 'key "socketDir": must be an absolute path, got "run/katavol"', why: 'containerd is given this address' },
  { area: 'shim config', via: cfg(`{"socketDir":"/run/${'k'.repeat(40)}"}`), error: 'is too long for unix socket paths (at most 36 bytes)', why: 'a socket path must fit sun_path (108 bytes)' },
  { area: 'shim config', via: cfg('{"warmDaemons":-1}'), error: 'key "warmDaemons": must be an integer from 0 (no pre-booted daemons) to 64, got -1', why: 'a count of daemons' },
  { area: 'shim config', via: cfg('{"warmDaemons":"2"}'), error: 'key "warmDaemons": must be an integer from 0 (no pre-booted daemons) to 64, got "2"', why: 'a number, not a string' },
  { area: 'shim config', via: cfg('{"downstream":"containerd-shim-kata-v2"}'), error: 'key "downstream": must be an absolute path to the real shim binary, got "containerd-shim-kata-v2"', why: 'containerd\'s PATH is not the shim\'s' },
  { area: 'shim config', via: cfg('{"downstream":"$DIR/no-such-shim"}'), error: 'key "downstream": downstream shim "$DIR/no-such-shim" is not an executable file (ENOENT)', why: 'nothing to forward to' },
  { area: 'shim config', via: cfg('{"downstream":"$SELF"}'), error: 'resolves to katavol itself', why: 'katavol in front of itself would recurse for ever' },

  // ---- OCI spec (the bundle's config.json at Create) -----------------------------------------------------
  { area: 'OCI spec', input: 'absent', via: { create: { missing: true } }, error: 'container "c1": cannot read OCI spec $BUNDLE/config.json: ENOENT', why: 'containerd writes it before Create; the bundle was changed' },
  { area: 'OCI spec', via: { create: '{"mounts": [' }, error: 'container "c1": cannot read OCI spec $BUNDLE/config.json: ', why: 'not JSON' },
  { area: 'OCI spec', via: { create: 'null' }, error: 'OCI spec $BUNDLE/config.json is not a JSON object', why: 'a spec is an object' },
  { area: 'OCI spec', via: { create: '{"mounts":{"disk":1}}' }, error: 'OCI spec $BUNDLE/config.json "mounts" is not a list', why: 'runc would fail too, after katavol had acted' },
  { area: 'OCI spec', via: { create: '{"annotations":[1],"mounts":[]}' }, error: '"annotations" is not an object', why: 'the sandbox id is read from the annotations' },
  { area: 'OCI spec', input: 'a FIFO', via: { create: { fifo: true } }, error: 'cannot read OCI spec: $BUNDLE/config.json is a FIFO, not a regular file', why: 'reading it would block Create forever' },
  { area: 'OCI spec', input: '4 MiB + 1 byte', via: { create: { bytes: (4 << 20) + 1 } }, error: 'config.json is 4194305 bytes, more than the 4194304 katavol reads from it', why: 'the daemon\'s heap is capped' },
  { area: 'OCI spec', via: { create: spec([{ destination: '/disk', type: 'directvol' }]) }, error: 'mount "/disk": a directvol mount needs a source', why: 'the source names the volume' },
  { area: 'OCI spec', via: { create: spec([dvol(5)]) }, error: 'mount "/disk": a directvol mount needs a source', why: 'a number is no volume path' },
  { area: 'OCI spec', via: { create: spec([dvol('/kubelet/none')]) }, error: 'mount "/disk": volume "/kubelet/none": is not registered in the registry root $ROOT', why: 'the message gives the add command' },
  { area: 'OCI spec', via: { create: spec([dvol('/kubelet/ok/')]) }, error: 'volume "/kubelet/ok/": is not registered, but /kubelet/ok is (volume paths are matched byte for byte) ($ROOT/L2t1YmVsZXQvb2sv); did you mean src=/kubelet/ok?', why: 'runtime-rs matches the source byte for byte' },
  { area: 'OCI spec', via: { create: spec([{ ...dvol('/kubelet/ok'), type: 'directvolume' }]) }, error: 'mount type "directvolume" is not a direct-volume type (runc would fail with "no such device"); did you mean type=directvol?', why: 'a near miss of a katavol type' },
  { area: 'OCI spec', via: { create: spec([dvol('/kubelet/ok', { destination: { path: '/disk' } })]) }, error: 'mount (destination an object): volume "/kubelet/ok": the mount has no destination (the path in the container, a string such as "/disk")', why: 'found by the Create fuzz: it reached the backend as a TypeError' },
  { area: 'OCI spec', via: { create: spec([dvol('/kubelet/ok', { options: 'rbind,rw' })]) }, error: 'mount "/disk": volume "/kubelet/ok": the mount options must be a list of strings without NUL bytes, found a string', why: 'containerd writes a list; the backend rewrites it' },
  { area: 'OCI spec', input: '{"mounts":[<directvol /kubelet/ok>],"linux":[[[… 600 levels …]]]}', via: { create: JSON.stringify({ mounts: [dvol('/kubelet/ok')], linux: '@DEEP@' }).replace('"@DEEP@"', `${'['.repeat(600)}${']'.repeat(600)}`) }, error: 'is nested deeper than 512 levels; containerd writes specs a few levels deep', why: 'found by the Create fuzz: rewriting it overflowed the stack (RangeError)' },
  { area: 'OCI spec', via: { create: spec([dvol('/kubelet/used')]) }, error: 'volume "/kubelet/used": mount /disk: the volume is read-write and already in use by sandbox pod-a (runtime-rs, read-write)', why: 'a read-write volume in use by another sandbox: two VMs would write one disk' },

  // ---- TTRPC frames --------------------------------------------------------------------------------------
  { area: 'TTRPC frame', input: 'a Request on an even stream id (2)', via: { to: 'server', frames: [{ streamId: 2, request: { service: 'refusals.v1.Svc', method: 'Echo' } }] }, error: 'InvalidArgument: StreamID must be odd for client initiated streams', why: 'even ids belong to the server (as in Go ttrpc)' },
  { area: 'TTRPC frame', input: 'a Request re-using stream id 3', via: { to: 'server', frames: [{ streamId: 3, request: { service: 'refusals.v1.Svc', method: 'Echo' } }, { streamId: 3, request: { service: 'refusals.v1.Svc', method: 'Echo' } }] }, error: 'InvalidArgument: StreamID cannot be re-used and must increment', why: 'ids only grow on a connection' },
  { area: 'TTRPC frame', input: 'a Data frame for a stream that is not open', via: { to: 'server', frames: [{ streamId: 5, type: 3, bodyHex: '0a01' }] }, error: 'InvalidArgument: StreamID is no longer active', why: 'no call to deliver it to' },
  { area: 'TTRPC frame', input: 'a Request whose body is not a Request message', via: { to: 'server', frames: [{ streamId: 1, bodyHex: 'ffffffffff' }] }, error: 'InvalidArgument: unmarshal request error: ', why: 'nothing to dispatch' },
  { area: 'TTRPC frame', input: 'a Request for an unknown service', via: { to: 'server', frames: [{ streamId: 1, request: { service: 'nope.v1.Svc', method: 'Echo' } }] }, error: 'Unimplemented: service nope.v1.Svc', why: 'as Go ttrpc answers' },
  { area: 'TTRPC frame', input: 'a Request for an unknown method', via: { to: 'server', frames: [{ streamId: 1, request: { service: 'refusals.v1.Svc', method: 'Nope' } }] }, error: 'Unimplemented: method Nope', why: 'as Go ttrpc answers' },
  { area: 'TTRPC frame', input: 'a Request whose deadline has passed (timeout_nano -1)', via: { to: 'server', frames: [{ streamId: 1, request: { service: 'refusals.v1.Svc', method: 'Echo', timeoutNano: -1 } }] }, error: 'DeadlineExceeded: context deadline exceeded', why: 'the caller has given up already' },
  { area: 'TTRPC frame', input: 'a frame of 4 MiB + 1 byte', via: { to: 'server', frames: [{ streamId: 1, zeroBytes: (4 << 20) + 1 }] }, error: 'ResourceExhausted: message length 4194305 exceed maximum message size of 4194304', why: 'ttrpc\'s frame limit; the bytes are skipped, the connection stays usable' },
  { area: 'TTRPC frame', input: 'containerd sends the shim a frame of 4 MiB + 1 byte', via: { to: 'proxy', frames: [{ streamId: 1, zeroBytes: (4 << 20) + 1 }] }, error: 'ResourceExhausted: message length 4194305 exceed maximum message size of 4194304', why: 'answered by the proxy; the downstream never sees it' },
  { area: 'TTRPC frame', input: 'task Create for a bundle with a bad spec (annotations a list)', via: { to: 'proxy', frames: [{ streamId: 1, create: { id: 'c1', bundle: '$BUNDLE' } }] }, error: 'FailedPrecondition: katavol: container "c1": OCI spec $BUNDLE/config.json "annotations" is not an object', why: 'Create is refused before the downstream sees it (code 9)' },

  // ---- environment ---------------------------------------------------------------------------------------
  { area: 'environment', via: { cli: ['direct-volume', 'add', '/kubelet/v1', OK_MI], exit: 1, env: { KATAVOL_VOLUME_ROOT: 'volumes' } }, error: '$KATAVOL_VOLUME_ROOT "volumes" is a relative path, which the CLI and the shim would each resolve from their own working directory; set KATAVOL_VOLUME_ROOT to an absolute path', why: 'two processes, two registries' },
  { area: 'environment', via: { cli: ['direct-volume', 'add', '/kubelet/v1', OK_MI], exit: 1, env: { KATAVOL_VOLUME_ROOT: '$IMG' } }, error: 'the registry root is not a directory ($IMG); remove it or set KATAVOL_VOLUME_ROOT to a directory', why: 'a file where the registry should be' },
  { area: 'environment', via: { cli: ['direct-volume', 'list'], exit: 1, env: { KATAVOL_VOLUME_ROOT: '$IMG/volumes' } }, error: 'cannot list the registry root: ENOTDIR', why: 'a file above the registry root' },
  { area: 'environment', via: { shimStart: true, env: { KATAVOL_CONFIG: '$DIR/none.json' } }, error: 'katavol config $DIR/none.json: cannot read: ENOENT', why: 'an explicit config must exist (only the default may be absent)' },
  { area: 'environment', via: { shimStart: true, env: { KATAVOL_CONFIG: '$DIR' } }, error: 'katavol config $DIR: cannot read: is a directory, not a regular file', why: 'not a file' },
  { area: 'environment', via: { shimStart: true, env: { KATAVOL_CONFIG: '$DIR/fifo' } }, error: 'katavol config $DIR/fifo: cannot read: is a FIFO, not a regular file', why: 'reading it would block every container start' },
];

/** A cell of a markdown table: one line, pipes escaped, long values cut. */
function cell(s: string, max = 160): string {
  const one = s.replace(/\n/g, ' ').replace(/\|/g, '\\|');
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

const quote = (a: string): string => (/^[\w@%+=:,./$-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

/** The input of a row as the doc shows it. */
export function inputOf(r: Row): string {
  if (r.input) return r.input;
  const v = r.via;
  const env = 'env' in v && v.env ? `${Object.entries(v.env).map(([k, x]) => `${k}=${x}`).join(' ')} ` : '';
  if ('cli' in v) return `${env}katavol ${v.cli.map(quote).join(' ')}`;
  if ('shimStart' in v) return v.config !== undefined ? v.config : `${env}containerd-shim-katavol-v2 start`;
  if ('create' in v) return typeof v.mountInfo === 'string' ? v.mountInfo : typeof v.create === 'string' ? v.create : '';
  return '';
}

/** Which real path a row goes through, for the doc. */
export function pathOf(r: Row): string {
  const v = r.via;
  if ('cli' in v) return `katavol (exit ${v.exit})`;
  if ('shimStart' in v) return 'shim `start`';
  if ('create' in v) return 'Create';
  return v.to === 'server' ? 'ttrpc server' : 'shim proxy';
}

export function renderRefusals(rows: Row[] = ROWS): string {
  const out = [
    '# What katavol refuses, and why',
    '',
    '<!-- Generated from test/refusals/catalogue.ts by `make refusals-doc`; test/refusals/refusals.test.ts runs every',
    '     row through the real code path and fails when this file differs from the table. Do not edit by hand. -->',
    '',
    'Every row below is a test: the input goes through the path named (the `katavol` CLI, the shim binary\'s',
    '`start`, the Create interceptor that every container start passes, a ttrpc server, or the shim proxy',
    'between containerd and the downstream shim), the answer must contain the text shown, and afterwards the',
    'registry, the bundle and every file the test made are byte for byte as before: a refusal changes nothing.',
    'Create refusals reach containerd as code 9 (FailedPrecondition) with the text after `katavol: `; the CLI',
    'prints `katavol: ` and the text (exit 2: usage, 1: refused); the shim\'s `start` prints',
    '`containerd-shim-katavol-v2: ` and the text, which containerd shows in its error.',
    '',
    'Placeholders: `$IMG` an ext4 image file, `$DIR` a scratch directory, `$ROOT` the registry root',
    '(`$KATAVOL_VOLUME_ROOT`), `$BUNDLE` the bundle, `$CFG` the shim config (`$KATAVOL_CONFIG`), `$SELF` the shim',
    'launcher itself. The registry holds `/kubelet/ok`, `/kubelet/used` (recorded as used by sandbox pod-a) and',
    '`/kubelet/hand`, whose mountInfo.json is the input of the Create rows that show one.',
    '',
  ];
  const areas = [...new Set(rows.map((r) => r.area))];
  for (const area of areas) {
    const mine = rows.filter((r) => r.area === area);
    out.push(`## ${area} (${mine.length})`, '', '| input | through | refused with | why |', '|---|---|---|---|');
    for (const r of mine) out.push(`| \`${cell(inputOf(r))}\` | ${pathOf(r)} | ${cell(r.error, 400)} | ${cell(r.why)} |`);
    out.push('');
  }
  out.push(`${rows.length} rows.`, '');
  return out.join('\n');
}
