// `make demo-k8s`: katavol as a Kubernetes runtime handler, on this machine, with no cluster and no KVM.
// A private containerd with its CRI plugin is driven the way kubelet drives it (CRI v1 over gRPC); a raw
// ext4 image is registered the way a CSI node plugin registers a pod's volume; a pod with an app and a
// sidecar shares it read-write; a second pod is refused; everything is removed and checked.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { KATAVOL, debugfsCat, loopDevicesOf, makeExt4Image } from '../test/support/containerd';
import { CriContainerd, KATAVOL_HANDLER } from '../test/support/cri';
import { isCriError } from '../test/support/cri-client';

const bold = process.stdout.isTTY ? (s: string) => `\x1b[1m${s}\x1b[0m` : (s: string) => s;
const step = (s: string) => console.log(`\n${bold(`==> ${s}`)}`);
const say = (s: string) => console.log(`   ${s}`);

async function main(): Promise<void> {
  step('1. A private containerd 1.6 with its CRI plugin, katavol registered as runtime handler "katavol"');
  const cri = await CriContainerd.start();
  try {
    const toml = fs.readFileSync(path.join(cri.dir, 'config.toml'), 'utf8');
    say(`everything lives under ${cri.dir} (your host containerd is untouched); the handler, in its config.toml:`);
    for (const l of toml.split('\n').filter((x) => x.includes(`runtimes.${KATAVOL_HANDLER}]`) || x.includes('io.containerd.katavol.v2'))) say(`  ${l.trim()}`);
    say(`containerd finds containerd-shim-katavol-v2 on its PATH; katavol's config: ${fs.readFileSync(cri.katavolConfig, 'utf8')}`);
    const v = await cri.client.version();
    say(`CRI Version: ${v.runtime_name} ${v.runtime_version}, API ${v.runtime_api_version}`);
    say('(in a cluster: a RuntimeClass with handler: katavol, and runtimeClassName: katavol in the pod spec)');

    step('2. The CSI node plugin\'s part: a raw ext4 image, published at the pod\'s target path and registered');
    const img = path.join(cri.dir, 'pvc-data.img');
    makeExt4Image(img, 32);
    const target = path.join(cri.dir, 'kubelet', 'pods', 'demo-pod-uid', 'volumes', 'kubernetes.io~csi', 'pvc-data', 'mount');
    fs.mkdirSync(target, { recursive: true });
    const info = JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4', options: ['bind', 'rw'] });
    say(`$ katavol direct-volume add ${target} '${info}'`);
    const add = spawnSync(KATAVOL, ['direct-volume', 'add', target, info], { encoding: 'utf8', env: { ...process.env, KATAVOL_VOLUME_ROOT: cri.volumeRoot } });
    if (add.status !== 0) throw new Error(add.stderr);
    say(add.stdout.trim() || add.stderr.trim());

    step('3. kubelet\'s part: RunPodSandbox (handler katavol), then an app and a sidecar mounting the volume read-write');
    const pod = await cri.runPod('demo', KATAVOL_HANDLER);
    say(`RunPodSandbox -> pod ${pod.id.slice(0, 12)}`);
    const mount = { container_path: '/data', host_path: target };
    const app = await cri.runContainer(pod, 'app', { mounts: [mount] });
    const sidecar = await cri.runContainer(pod, 'sidecar', { mounts: [mount] });
    say(`CreateContainer + StartContainer -> app ${app.slice(0, 12)}, sidecar ${sidecar.slice(0, 12)} (mount host_path = the target path)`);
    const exec = async (id: string, script: string) => (await cri.client.execSync(id, ['/bin/sh', '-c', script])).stdout.trim();
    say(`app sees:     ${await exec(app, 'grep " /data " /proc/self/mountinfo | sed "s/.* - //"')}`);
    say(`sidecar sees: ${await exec(sidecar, 'grep " /data " /proc/self/mountinfo | sed "s/.* - //"')}   (one loop device for the pod)`);
    await exec(app, 'echo "written by the app" > /data/log.txt; sync');
    say(`app wrote /data/log.txt; ExecSync in the sidecar: cat /data/log.txt -> ${await exec(sidecar, 'cat /data/log.txt')}`);
    await exec(sidecar, 'echo "and by the sidecar" >> /data/log.txt; sync');

    step('4. Another pod asking for the same read-write volume is refused at StartContainer (code 9)');
    const other = await cri.runPod('intruder', KATAVOL_HANDLER);
    const target2 = target.replace('demo-pod-uid', 'intruder-uid');
    fs.mkdirSync(target2, { recursive: true });
    spawnSync(KATAVOL, ['direct-volume', 'add', target2, info], { env: { ...process.env, KATAVOL_VOLUME_ROOT: cri.volumeRoot } });
    const c2 = await cri.createContainer(other, 'app', { mounts: [{ container_path: '/data', host_path: target2 }] });
    try {
      await cri.client.startContainer(c2);
      throw new Error('the second pod was not refused');
    } catch (e) {
      if (!isCriError(e)) throw e;
      say(`StartContainer: code ${e.code}: ${e.details}`);
    }
    await cri.removePod(other);

    step('5. The pod goes away: StopPodSandbox + RemovePodSandbox; the host reads the data back from the image');
    await cri.removePod(pod);
    say(`$ debugfs -R 'cat /log.txt' pvc-data.img`);
    for (const l of debugfsCat(img, '/log.txt').trim().split('\n')) say(`  ${l}`);
    const left = await cri.leftovers({ pods: [pod.id, other.id], containers: [app, sidecar, c2] }, [img]);
    if (left.length) throw new Error(`left behind: ${left.join('; ')}`);
    if (loopDevicesOf(img).length) throw new Error('loop device left');
    say('nothing left: no shim or katavol process, loop device, socket, bundle, cgroup or sandbox record');
    step('Done: a pod\'s containers shared a direct volume through the katavol runtime handler. Cleaning up.');
  } finally {
    await cri.stop();
  }
}

main().catch((e) => {
  console.error(`demo-k8s FAILED: ${(e as Error).message}`);
  process.exit(1);
});
