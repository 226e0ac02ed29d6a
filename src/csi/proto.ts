// Loads the unmodified CSI v1.9.0 proto (proto/csi/csi.proto) for @grpc/grpc-js. Field names stay
// snake_case, int64s are decimal strings (sizes up to 2^63 arrive intact), enums are their names.
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Repository root from dist/src/csi. */
export const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');
export const CSI_PROTO = 'csi/csi.proto';

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] };

export interface CsiPackage {
  Identity: grpc.ServiceClientConstructor;
  Controller: grpc.ServiceClientConstructor;
  Node: grpc.ServiceClientConstructor;
}

export function loadCsi(): CsiPackage {
  const def = protoLoader.loadSync(CSI_PROTO, LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as { csi: { v1: CsiPackage } };
  return pkg.csi.v1;
}
