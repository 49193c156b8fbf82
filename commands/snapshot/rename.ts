import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { snapshotJson } from './create.js';
import { validateUserSnapshotName } from '../../src/volume/snapshot-name.js';

export default class SnapshotRename extends ImgstreamCommand {
  static override summary = 'Rename a snapshot.';
  static override examples = ['<%= config.bin %> snapshot rename vm.vol monday before-upgrade'];
  static override args = {
    volume: Args.string({ description: 'Volume file or block device.', required: true }),
    old: Args.string({ description: 'Current name.', required: true }),
    new: Args.string({ description: 'New name (as snapshot create takes: not "active" or "moa", nor beginning with "mirror.").', required: true }),
  };

  async run() {
    const { args } = await this.parse(SnapshotRename);
    const e = await withVolumeAccess(args.volume, { write: true }, (vol) => vol.renameSnapshot(args.old, validateUserSnapshotName(args.new)));
    this.say(`snapshot ${args.old} renamed to ${e.name}`);
    return snapshotJson(e);
  }
}
