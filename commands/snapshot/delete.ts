import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { snapshotJson } from './create.js';

export default class SnapshotDelete extends ImgstreamCommand {
  static override summary = 'Delete a snapshot, freeing the blocks no other plane holds.';
  static override examples = ['<%= config.bin %> snapshot delete vm.vol monday'];
  static override args = {
    volume: Args.string({ description: 'Volume file or block device.', required: true }),
    name: Args.string({ description: 'Snapshot to delete.', required: true }),
  };

  async run() {
    const { args } = await this.parse(SnapshotDelete);
    const e = await withVolumeAccess(args.volume, { write: true }, (vol) => vol.deleteSnapshot(args.name));
    this.say(`snapshot ${e.name} deleted`);
    return snapshotJson(e);
  }
}
