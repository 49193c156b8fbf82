import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { formatSize } from '../../src/core/size.js';

export default class VolumeInfo extends ImgstreamCommand {
  static override summary = 'Show a volume\'s geometry, usage and last consistency point.';
  static override description = 'Counts free blocks with one pass over the planes (no data block is read): those a change may take. A few more (6 to 64) are held back for the journals of CPs and snapshot deletes and never take data; they are shown apart. While a large change is uncommitted, or with shadow snapshots, the allocator keeps some more, so that the CP committing a change always finds room: a write is refused (volume full) rather than a CP. Blocks that only shadow snapshots hold are counted apart as reusable: the allocator takes them (and the shadow snapshots lose them) once no free block is left.';
  static override examples = ['<%= config.bin %> volume info vm.vol', '<%= config.bin %> volume info vm.vol --json'];
  static override args = { volume: Args.string({ description: 'Volume file or block device.', required: true }) };

  async run() {
    const { args } = await this.parse(VolumeInfo);
    const info = await withVolumeAccess(args.volume, { write: false, unfinishedRestore: true }, (vol) => vol.info());
    const bs = info.blockSize;
    const rows: Array<[string, string]> = [
      ['volume', info.path],
      ['uuid', info.uuid],
      ['block size', formatSize(bs)],
      ['logical disk', `${formatSize(info.logicalSize)} (${info.logicalBlocks} blocks, ${info.mappedBlocks} mapped)`],
      ['volume blocks', `${info.nblocks} (${formatSize(info.nblocks * bs)})`],
      ['active plane', `${info.usedBlocks} blocks (${formatSize(info.usedBlocks * bs)})`],
      ['free', `${info.freeBlocks} blocks (${formatSize(info.freeBlocks * bs)})${info.reusableBlocks ? `, and ${info.reusableBlocks} (${formatSize(info.reusableBlocks * bs)}) held only by shadow snapshots, reusable` : ''}; ${info.heldBackBlocks} more held back for journals`],
      ['metadata', formatSize(info.metadataBytes)],
      ['snapshots', `${info.snapshots} of ${info.maxSnapshots}`],
      ['last CP', `generation ${info.generation} at ${info.lastCp}`],
      ['mark-on-allocate', `recording in moa.${info.markOnAllocate.recording}, ${info.markOnAllocate.swaps} swaps, marked ${info.markOnAllocate.marked.join(' / ')}`],
      ['created', info.created],
    ];
    if (info.restoreUnfinished) rows.push(['restore', 'unfinished: a restore stopped while it rewrote the active disk in place (its regular snapshots are whole); run it again to finish it']);
    if (info.protectionBase) rows.push(['protection', 'the base of a protection destination (read-only; restore --as-of --from its directory rebuilds volumes from it)']);
    if (info.mirror) rows.push(['mirror', info.mirror === 'destination' ? 'destination (read-only; mirror break makes it writable)' : 'broken off (writable; mirror resync brings it back)']);
    for (const [k, v] of rows) this.say(`${k.padEnd(17)} ${v}`);
    return info;
  }
}
