import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { exportImage, fileSink, parseVolumeRef, stdoutSink, withVolume } from '../../src/volume/index.js';
import { formatSize } from '../../src/size.js';
import { UsageError } from '../../src/errors.js';

export default class VolumeExport extends ImgstreamCommand {
  static override summary = 'Write the active file system or a snapshot as a raw image.';
  static override description = `Writes the logical disk as of the active file system, or as of a snapshot with VOL@SNAPSHOT, as a raw image of the disk's size. Only mapped blocks are read. A file output is sparse, is written under a temporary name and appears under its own name only when complete; an existing file is replaced only with --force. "-" writes to stdout.`;
  static override examples = [
    '<%= config.bin %> volume export vm.vol --to current.raw',
    '<%= config.bin %> volume export vm.vol@monday --to monday.raw',
    '<%= config.bin %> volume export vm.vol@monday --to - | sha256sum',
  ];
  static override args = { volume: Args.string({ description: 'VOL or VOL@SNAPSHOT.', required: true }) };
  static override flags = {
    to: Flags.string({ helpValue: 'FILE|-', char: 't', description: 'Output file or block device, or - for stdout.', required: true }),
    force: Flags.boolean({ description: 'Replace an existing output file.' }),
  };

  async run() {
    const { args, flags } = await this.parse(VolumeExport);
    if (flags.to === '-' && this.jsonEnabled()) throw new UsageError('--json cannot be combined with --to -: the image goes to stdout');
    const ref = parseVolumeRef(args.volume);
    const result = await withVolume(ref.volume, false, async (vol) => {
      if (ref.snapshot !== undefined) vol.snapshot(ref.snapshot); // fail before creating any output
      const sink = flags.to === '-' ? stdoutSink() : fileSink(flags.to, { force: flags.force, size: vol.rootRecord.logicalSize });
      try {
        const r = await exportImage(vol, ref.snapshot, sink, this.progress());
        await sink.finish();
        return r;
      } catch (err) {
        sink.discard();
        throw err;
      }
    });
    if (flags.to !== '-') this.say(`exported ${ref.snapshot ? `snapshot ${ref.snapshot}` : 'active file system'} to ${flags.to}: ${formatSize(result.bytes)}, ${result.mappedBlocks} blocks mapped`);
    return { ...result, to: flags.to };
  }
}
