// Backend factory: the shim config's `backend` key names one of these.
import type { Backend } from './backend';
import { Registry } from '../volumes/registry';

/** The parts of the shim config (src/shim/config.ts ShimConfig) that backends read. */
export interface BackendSettings {
  /** The config file, for messages. */
  file: string;
  /** The runtimeRs section, parsed by the runtime-rs backend. */
  runtimeRs?: unknown;
}

export interface BackendDeps {
  config: BackendSettings;
  /** Resolved registry root (env KATAVOL_VOLUME_ROOT > config volumeRoot > Kata's). */
  volumeRoot: string;
}

export function createBackend(name: string, deps: BackendDeps): Backend {
  const registry = new Registry(deps.volumeRoot);
  switch (name) {
    case 'runc': {
      const { RuncBackend } = require('./runc') as typeof import('./runc');
      return new RuncBackend(registry);
    }
    case 'runtime-rs': {
      const { RuntimeRsBackend } = require('./runtime-rs/backend') as typeof import('./runtime-rs/backend');
      const { parseRuntimeRsConfig } = require('./runtime-rs/config') as typeof import('./runtime-rs/config');
      return new RuntimeRsBackend(parseRuntimeRsConfig(deps.config.runtimeRs ?? {}, deps.config.file), registry);
    }
    default:
      throw new Error(`unknown backend "${name}"`);
  }
}
