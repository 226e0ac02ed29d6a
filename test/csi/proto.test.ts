// proto/csi/csi.proto is the CSI spec v1.9.0 file, unmodified, and the well-known types it imports
// (which protobufjs supplies from its bundled copies) are field for field Debian's upstream ones.
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as protobuf from 'protobufjs';
import { REPO } from '../support/containerd';
import { CSI_PROTO, PROTO_DIR, loadCsi } from '../../src/csi/proto';

// container-storage-interface/spec tag v1.9.0 (commit 80d53107), csi.proto.
const UPSTREAM_SHA256 = '0b625eff0484fa61a1ddb06570a71c118e6af3b8f73e4d860f43d477412e4d55';
/** Where libprotobuf-dev installs the well-known .proto files (scripts/deps.sh installs it). */
const DEBIAN_WKT = '/usr/include';

describe('csi.proto copy', () => {
  const ours = path.join(PROTO_DIR, CSI_PROTO);

  it('is the upstream v1.9.0 file byte for byte (pinned digest)', () => {
    assert.equal(crypto.createHash('sha256').update(fs.readFileSync(ours)).digest('hex'), UPSTREAM_SHA256);
  });

  it('is byte-identical to the reference copy in shared/reference/upstream', function () {
    const ref = [path.join(REPO, '..', 'shared'), '/work/shared'].map((d) => path.join(d, 'reference', 'upstream', 'csi.proto')).find((f) => fs.existsSync(f));
    if (!ref) this.skip(); // the digest above still pins the content
    assert.ok(fs.readFileSync(ours).equals(fs.readFileSync(ref)), `${ours} differs from ${ref}`);
  });

  it('loads with the three services the plugin serves (and GroupController, which it does not offer)', () => {
    const csi = loadCsi();
    assert.ok(csi.Identity.service.Probe && csi.Controller.service.CreateVolume && csi.Node.service.NodePublishVolume);
  });

  for (const [file, types] of [['wrappers', ['BoolValue', 'Int64Value']], ['timestamp', ['Timestamp']]] as const) {
    it(`google/protobuf/${file}.proto as bundled by protobufjs matches Debian's copy for ${types.join(', ')}`, () => {
      const debian = protobuf.parse(fs.readFileSync(path.join(DEBIAN_WKT, 'google/protobuf', `${file}.proto`), 'utf8')).root;
      const bundled = protobuf.Root.fromJSON(protobuf.common.get(`google/protobuf/${file}.proto`) as protobuf.INamespace);
      for (const t of types) {
        const fields = (root: protobuf.Root): string => root.lookupType(`google.protobuf.${t}`).fieldsArray.map((f) => `${f.id} ${f.type} ${f.name}`).join('; ');
        assert.equal(fields(bundled), fields(debian), t);
      }
    });
  }
});
