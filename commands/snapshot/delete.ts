import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState, stateFlag } from '../_cli/mirror-flags.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { BusyError } from '../../src/core/errors.js';
import { snapshotJson } from './create.js';

export default class SnapshotDelete extends ImgstreamCommand {
  static override summary = 'Delete a snapshot, freeing the blocks no other plane holds.';
  static override description = `A master snapshot that a known replica has not passed yet (its newest master is not newer: "replicate pull" recorded it) is kept, since that replica's next pull starts from it: --force deletes it anyway (the replica then gets a full copy).`;
  static override examples = ['<%= config.bin %> snapshot delete vm.vol monday', '<%= config.bin %> snapshot delete vm.vol release-1 --force'];
  static override args = {
    volume: Args.string({ description: 'Volume file or block device.', required: true }),
    name: Args.string({ description: 'Snapshot to delete.', required: true }),
  };
  static override flags = {
    force: Flags.boolean({ description: 'Delete a master snapshot even when a known replica still needs it.' }),
    state: stateFlag,
  };

  async run() {
    const { args, flags } = await this.parse(SnapshotDelete);
    const e = await withVolumeAccess(args.volume, { write: true }, async (vol) => {
      const s = (await vol.snapshots()).find((x) => x.name === args.name);
      if (s?.master && !flags.force) {
        const holding = openState(flags.state).replicasHolding((await vol.info()).uuid, s);
        if (holding.length) {
          throw new BusyError(`${args.volume}: master snapshot "${s.name}" is the newest master of ${holding.length} replica(s) (${holding.map((r) => r.replica).join(', ')}): their next pull starts from it`, 'pull those replicas first, or pass --force (they then get a full copy)');
        }
      }
      return vol.deleteSnapshot(args.name);
    });
    this.say(`snapshot ${e.name} deleted`);
    return snapshotJson(e);
  }
}
