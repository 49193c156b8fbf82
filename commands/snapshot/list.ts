import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { formatSize } from '../../src/core/size.js';
import { snapshotJson } from './create.js';
import { tableLines } from '../_cli/table.js';

export default class SnapshotList extends ImgstreamCommand {
  static override summary = 'List a volume\'s snapshots, oldest first.';
  static override description = 'BLOCKS is what each snapshot holds now: a shadow snapshot whose blocks the allocator reused holds that many fewer (FLAGS shows reused:N).';
  static override examples = ['<%= config.bin %> snapshot list vm.vol', '<%= config.bin %> snapshot list vm.vol --json'];
  static override args = { volume: Args.string({ description: 'Volume file or block device.', required: true }) };

  async run() {
    const { args } = await this.parse(SnapshotList);
    const { list, bs, damaged } = await withVolumeAccess(args.volume, { write: false, unfinishedRestore: true }, async (vol) => ({ list: await vol.snapshots(), bs: vol.blockSize, damaged: vol.kind === 'local' ? vol.volume.damagedSnapshotSlots : [] }));
    for (const slot of damaged) process.stderr.write(`imgstream: ${args.volume}: snapshot table entry ${slot} is damaged: its snapshot is not listed (imgstream volume check --drop-damaged-snapshots drops it)\n`);
    if (list.length === 0) this.say('no snapshots');
    else {
      const rows = list.map((e) => {
        const flags = [e.shadow ? 'shadow' : '', e.master ? 'master' : '', e.reusedBlocks ? `reused:${e.reusedBlocks}` : ''].filter(Boolean).join(',');
        // what the snapshot's plane holds now: a shadow snapshot loses the blocks the allocator reuses
        const held = e.blocks - e.reusedBlocks;
        return [e.name, new Date(e.createdMs).toISOString(), String(held), formatSize(held * bs), flags || '-'];
      });
      // each column as wide as its widest cell: a long name does not shift the others
      for (const line of tableLines(['NAME', 'CREATED', 'BLOCKS', 'SIZE', 'FLAGS'], rows, new Set([2, 3]))) this.say(line);
    }
    return { snapshots: list.map(snapshotJson) };
  }
}
