// deploy/ cannot be applied here (no cluster), so this checks what can be checked offline: every file
// parses, the objects name each other consistently, the plugin's arguments are flags `katavol csi` has
// and parse as it parses them, what the plugin writes is mounted from the host, and the containerd
// snippets give the handler the RuntimeClass names (1.6/1.7 checked by this host's containerd itself).
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { parseAllDocuments } from 'yaml';
import { KATAVOL, REPO } from '../support/containerd';
import { CSI_VALUE_FLAGS, parseCsiArgs } from '../../src/cli/csi';
import { DEFAULT_DRIVER_NAME, socketPathOf } from '../../src/csi/options';
import { readParams } from '../../src/csi/volume-params';
import { KATA_VOLUME_ROOT } from '../../src/volumes/registry';

const DEPLOY = path.join(REPO, 'deploy');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function objects(): Obj[] {
  const out: Obj[] = [];
  for (const f of fs.readdirSync(DEPLOY).filter((n) => n.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(fs.readFileSync(path.join(DEPLOY, f), 'utf8'))) {
      assert.deepEqual(doc.errors, [], `${f}: ${doc.errors.join('; ')}`);
      const o = doc.toJS() as Obj;
      assert.ok(o?.apiVersion && o.kind && o.metadata?.name, `${f}: a document without apiVersion/kind/metadata.name`);
      out.push({ ...o, file: f });
    }
  }
  return out;
}

describe('deploy/ manifests', () => {
  const all = objects();
  const one = (kind: string): Obj => {
    const found = all.filter((o) => o.kind === kind);
    assert.equal(found.length, 1, `one ${kind} expected, found ${found.length}`);
    return found[0];
  };
  const ds = one('DaemonSet');
  const pod = ds.spec.template.spec;
  const plugin = pod.containers.find((c: Obj) => c.name === 'katavol');
  const mountOf = (c: Obj, p: string): Obj | undefined =>
    c.volumeMounts.filter((m: Obj) => p === m.mountPath || p.startsWith(m.mountPath + '/')).sort((a: Obj, b: Obj) => b.mountPath.length - a.mountPath.length)[0];
  const hostPathOf = (name: string): string => pod.volumes.find((v: Obj) => v.name === name).hostPath.path;

  it('holds a CSIDriver, DaemonSet, StorageClass, RuntimeClass katavol and the sidecars\' RBAC, all parsing', () => {
    assert.deepEqual([...new Set(all.map((o) => o.kind))].sort(), ['CSIDriver', 'ClusterRole', 'ClusterRoleBinding', 'DaemonSet', 'RuntimeClass', 'ServiceAccount', 'StorageClass']);
    assert.equal(one('RuntimeClass').metadata.name, 'katavol');
    assert.equal(one('RuntimeClass').handler, 'katavol');
    assert.equal(pod.serviceAccountName, one('ServiceAccount').metadata.name);
  });

  it('names one driver everywhere: CSIDriver, StorageClass provisioner, --driver-name, the registrar\'s socket path', () => {
    const driver = one('CSIDriver').metadata.name;
    assert.equal(driver, DEFAULT_DRIVER_NAME);
    assert.equal(one('StorageClass').provisioner, driver);
    assert.ok(plugin.args.includes(`--driver-name=${driver}`));
    const registrar = pod.containers.find((c: Obj) => c.name === 'node-driver-registrar');
    assert.ok(registrar.args.includes(`--kubelet-registration-path=/var/lib/kubelet/plugins/${driver}/csi.sock`));
    assert.equal(hostPathOf('socket-dir'), `/var/lib/kubelet/plugins/${driver}`);
    assert.equal(one('CSIDriver').spec.attachRequired, false);
  });

  it('runs `katavol csi` with flags the binary has, and they parse as it parses them', () => {
    assert.equal(plugin.args[0], 'csi');
    const help = spawnSync(KATAVOL, ['csi', '--help'], { encoding: 'utf8' }).stdout;
    for (const a of plugin.args.slice(1)) {
      const flag = /^--([a-z-]+)=/.exec(a)?.[1];
      assert.ok(flag && CSI_VALUE_FLAGS.includes(flag) && help.includes(`--${flag} `), `${a} is not a katavol csi flag`);
    }
    const argv = plugin.args.slice(1).map((a: string) => a.replace('$(NODE_NAME)', 'node-1'));
    assert.ok(plugin.env.some((e: Obj) => e.name === 'NODE_NAME' && e.valueFrom.fieldRef.fieldPath === 'spec.nodeName'));
    const o = parseCsiArgs(argv, { out: () => undefined, err: () => undefined, env: {} });
    assert.equal(o.nodeId, 'node-1');
    assert.equal(o.volumeRoot, KATA_VOLUME_ROOT);

    // Everything the plugin reads or writes is a hostPath at the same place (kubelet and the shims use these paths).
    const sock = socketPathOf(o.endpoint)!;
    for (const [what, p, samePath] of [['socket', sock, false], ['storage', o.storageDir, false], ['state', o.stateDir, false], ['kubelet dir', o.kubeletDir, true], ['registry', o.volumeRoot, true]] as const) {
      const m = mountOf(plugin, p);
      assert.ok(m, `${what} ${p} is not mounted into the plugin container`);
      if (samePath) assert.equal(hostPathOf(m.name), m.mountPath, `${what} must be mounted at its host path`);
    }
    const registrarMount = mountOf(pod.containers.find((c: Obj) => c.name === 'node-driver-registrar'), '/csi/csi.sock');
    assert.equal(registrarMount?.name, mountOf(plugin, sock)?.name);
    assert.equal(plugin.securityContext.privileged, true);
    // One resizer acts for the whole cluster (ControllerExpandVolume answers for any node's volume).
    assert.ok(pod.containers.find((c: Obj) => c.name === 'csi-resizer').args.includes('--leader-election=true'));
    assert.ok(one('ClusterRole').rules.some((r: Obj) => r.resources.includes('leases') && r.verbs.includes('update')));
    assert.equal(pod.hostPID, true);
  });

  it('the StorageClass parameters are ones CreateVolume accepts; binding waits for the pod\'s node', () => {
    const sc = one('StorageClass');
    assert.deepEqual(readParams('pvc-x', sc.parameters, []), { volumeType: 'directvol', fsType: 'ext4', device: '' });
    assert.equal(sc.volumeBindingMode, 'WaitForFirstConsumer');
    assert.equal(sc.allowVolumeExpansion, true);
  });

  for (const v of ['1.6', '1.7', '2.x']) {
    it(`containerd ${v} snippet: handler katavol with runtime_type io.containerd.katavol.v2`, function () {
      const file = path.join(DEPLOY, 'containerd', `${v}.toml`);
      const text = fs.readFileSync(file, 'utf8');
      const table = v === '2.x' ? 'plugins."io.containerd.cri.v1.runtime".containerd.runtimes.katavol' : 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.katavol';
      assert.match(text, new RegExp(`^version = ${v === '2.x' ? 3 : 2}$`, 'm'));
      assert.ok(text.includes(`[${table}]`), `${file} has no [${table}]`);
      if (v === '2.x') return; // containerd 1.6 here cannot read a version 3 config
      // This host's containerd 1.6 reads the snippet and shows the handler in its effective config.
      const dump = spawnSync('containerd', ['--config', file, 'config', 'dump'], { encoding: 'utf8' });
      assert.equal(dump.status, 0, dump.stderr);
      const section = dump.stdout.split(`[${table}]`)[1]?.split(/\n\s*\[(?!.*katavol\.)/)[0] ?? '';
      assert.match(section, /runtime_type = "io\.containerd\.katavol\.v2"/);
      assert.match(section, /privileged_without_host_devices = true/);
    });
  }

  it('docs/kubernetes.md walks through every file in deploy/', () => {
    const doc = fs.readFileSync(path.join(REPO, 'docs', 'kubernetes.md'), 'utf8');
    const files = [...fs.readdirSync(DEPLOY).filter((f) => f !== 'containerd'), ...fs.readdirSync(path.join(DEPLOY, 'containerd')).map((f) => `containerd/${f}`)];
    for (const f of files) assert.ok(doc.includes(`deploy/${f}`), `docs/kubernetes.md does not mention deploy/${f}`);
  });

  it('docs/cli.md documents `katavol csi` and each of its flags', () => {
    const doc = fs.readFileSync(path.join(REPO, 'docs', 'cli.md'), 'utf8');
    assert.match(doc, /katavol csi/);
    for (const f of CSI_VALUE_FLAGS) assert.ok(doc.includes(`--${f}`), `docs/cli.md does not mention --${f}`);
  });
});
