import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { Volume, DEFAULT_MAX_SNAPSHOTS, VolumeLayout } from '../../src/volume/index.js';
import { formatSize, parseSize } from '../../src/core/size.js';
import { FLAG_BLOCK_DEVICE } from '../../src/volume/volume-flags.js';

export default class VolumeCreate extends ImgstreamCommand {
  static override summary = 'Create a volume in a file or on a block device.';
  static override description = `The volume holds a logical disk of --size bytes, mapped write-anywhere onto blocks of --block-size bytes, plus its snapshots and all its metadata: copying the file copies the volume. A file volume is sparse: it takes disk space only for blocks in use.

--volume-size is the size of the whole volume file (data, blocks kept by snapshots, metadata); it defaults to blocks for twice --size and twice its map (room to rewrite every block of the disk once while no snapshot holds it), plus the metadata, or the largest file the file system holds when that is less (ext4 holds 16 TiB), as long as it holds the disk once over. On a block device it defaults to the whole device.

On a block device the volume is never written over a device the kernel holds (mounted, a swap area, LVM, md, dm-crypt: exit 7, --force or not), nor over a volume another imgstream process holds (exit 7); a volume, file system or partition table already there (blkid's probe names it) is written over only with --force (exit 6 without).`;
  static override examples = [
    '<%= config.bin %> volume create vm.vol --size 20G',
    '<%= config.bin %> volume create big.vol --size 16T --volume-size 15T --block-size 64K',
    '<%= config.bin %> volume create /dev/sdb --size 500G --force',
  ];
  static override args = {
    volume: Args.string({ description: 'Path of the new volume file (or a block device).', required: true }),
  };
  static override flags = {
    size: Flags.string({ helpValue: 'SIZE', char: 's', description: 'Logical disk size, e.g. 96M, 20G, 1T (a multiple of the block size).', required: true }),
    'volume-size': Flags.string({ helpValue: 'SIZE', description: 'Total size of the volume file: data, snapshots and metadata [default: blocks for twice --size and its map, plus the metadata].' }),
    'block-size': Flags.string({ helpValue: 'BYTES', char: 'b', description: 'Block size: a power of two from 4K to 1M.', default: '4K' }),
    'max-snapshots': Flags.integer({ helpValue: 'N', description: 'Snapshot slots to reserve.', default: DEFAULT_MAX_SNAPSHOTS }),
    force: Flags.boolean({ description: 'On a block device: write over the volume, file system or partition table it holds (never over one in use).' }),
  };

  async run() {
    const { args, flags } = await this.parse(VolumeCreate);
    const blockSize = parseSize(flags['block-size'], 'block size');
    const size = parseSize(flags.size, 'size');
    const volumeSize = flags['volume-size'] === undefined ? undefined : parseSize(flags['volume-size'], 'volume size');
    const root = Volume.create(args.volume, { size, blockSize, volumeSize, maxSnapshots: flags['max-snapshots'], force: flags.force });
    const layout = new VolumeLayout(root.blockSize, root.nblocks, root.maxSnapshots);
    const result = {
      path: args.volume,
      uuid: root.uuid,
      blockSize: root.blockSize,
      logicalSize: root.logicalSize,
      nblocks: root.nblocks,
      volumeBytes: layout.fileBytes,
      maxSnapshots: root.maxSnapshots,
    };
    // no --volume-size, and less than the default: the file system holds no larger file
    const fitted = volumeSize === undefined && (root.flags & FLAG_BLOCK_DEVICE) === 0 && root.nblocks < (2 * size) / root.blockSize;
    this.say(`created ${args.volume}: ${formatSize(size)} logical disk, ${root.nblocks} volume blocks of ${formatSize(blockSize)} (${formatSize(layout.fileBytes)} volume file${fitted ? ': the largest file this file system holds' : ''}), uuid ${root.uuid}`);
    return result;
  }
}
