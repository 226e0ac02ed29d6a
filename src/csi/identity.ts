// CSI Identity service: who the plugin is, what it offers, and whether it can work right now.
import * as fs from 'fs';
import { messageOf } from '../volumes/types';
import { failedPrecondition } from './errors';
import { type CsiOptions } from './options';

export class IdentityService {
  constructor(private readonly o: CsiOptions) {}

  GetPluginInfo(): object {
    return { name: this.o.driverName, vendor_version: this.o.version, manifest: {} };
  }

  GetPluginCapabilities(): object {
    return {
      capabilities: [
        { service: { type: 'CONTROLLER_SERVICE' } },
        { service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } },
        { volume_expansion: { type: 'ONLINE' } },
      ],
    };
  }

  /** Ready when the storage and state directories are writable (what every volume operation needs). */
  Probe(): object {
    for (const [flag, dir] of [['--storage', this.o.storageDir], ['--state', this.o.stateDir]]) {
      try {
        fs.accessSync(dir, fs.constants.W_OK);
      } catch (e) {
        throw failedPrecondition('', `the ${flag} directory ${dir} is not writable: ${messageOf(e)}`, `mount it into the plugin container read-write (hostPath)`, e);
      }
    }
    return { ready: { value: true } };
  }
}
