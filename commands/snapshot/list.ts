import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { formatSize } from '../../src/core/size.js';
import { snapshotJson } from './create.js';

export default class SnapshotList extends ImgstreamCommand {
  static override summary = 'List a volume\'s snapshots, oldest first.';
  static override description = 'BLOCKS is what each snapshot holds now: a shadow snapshot whose blocks the allocator reused holds that many fewer (FLAGS shows reused:N).';
  static override examples = ['<%= config.bin %> snapshot list vm.vol', '<%= config.bin %> snapshot list vm.vol --json'];
  static override args = { volume: Args.string({ description: 'Volume file or block device.', required: true }) };

  async run() {
    const { args } = await this.parse(SnapshotList);
    const { list, bs } = await withVolumeAccess(args.volume, { write: false }, async (vol) => ({ list: await vol.snapshots(), bs: vol.blockSize }));
    if (list.length === 0) this.say('no snapshots');
    else {
      this.say(`${'NAME'.padEnd(24)} ${'CREATED'.padEnd(24)} ${'BLOCKS'.padStart(10)} ${'SIZE'.padStart(10)}  FLAGS`);
      for (const e of list) {
        const flags = [e.shadow ? 'shadow' : '', e.master ? 'master' : '', e.reusedBlocks ? `reused:${e.reusedBlocks}` : ''].filter(Boolean).join(',');
        // what the snapshot's plane holds now: a shadow snapshot loses the blocks the allocator reuses
        const held = e.blocks - e.reusedBlocks;
        this.say(`${e.name.padEnd(24)} ${new Date(e.createdMs).toISOString().padEnd(24)} ${String(held).padStart(10)} ${formatSize(held * bs).padStart(10)}  ${flags || '-'}`);
      }
    }
    return { snapshots: list.map(snapshotJson) };
  }
}
