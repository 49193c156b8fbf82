import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { fileSink, parseVolumeRef, stdoutSink } from '../../src/volume/index.js';
import { exportVolumeAt } from '../../src/control/index.js';
import { formatSize } from '../../src/size.js';
import { UsageError } from '../../src/errors.js';

export default class VolumeExport extends ImgstreamCommand {
  static override summary = 'Write the active file system or a snapshot as a raw image.';
  static override description = `Writes the logical disk as of the active file system, or as of a snapshot with VOL@SNAPSHOT, as a raw image of the disk's size. Only mapped blocks are read. A file output is sparse, is written under a temporary name and appears under its own name only when complete; an existing file is replaced only with --force. "-" writes to stdout.

While the volume is being served (imgstream serve nbd), a snapshot is exported as it is (the server keeps it from being deleted until the export ends), and the active file system as a temporary snapshot the server takes for the export (named imgstream-export-PID-TIME, deleted when the export ends; it needs a free snapshot slot).`;
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
    const result = await exportVolumeAt(ref.volume, ref.snapshot, (size) => (flags.to === '-' ? stdoutSink() : fileSink(flags.to, { force: flags.force, size })), this.progress());
    if (flags.to !== '-') this.say(`exported ${ref.snapshot ? `snapshot ${ref.snapshot}` : 'active file system'} to ${flags.to}: ${formatSize(result.bytes)}, ${result.mappedBlocks} blocks mapped`);
    return { ...result, to: flags.to };
  }
}
