import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from './_cli/base.js';
import { withVolumeAccess } from '../src/control/index.js';
import { formatSize } from '../src/core/size.js';

export default class Image extends ImgstreamCommand {
  static override summary = 'Evaluate a storage image: which blocks an expression over planes selects.';
  static override description = `A storage image is a set of VBNs given by an expression over the volume's planes: snapshot names, "active", "moa.0" and "moa.1" (the mark-on-allocate planes), "+" (union), "-" (difference: A and not B), "&" (intersection) and parentheses. "&" binds tighter than "+" and "-", which group left to right. The right side of "-" must be a snapshot: only a snapshot is sure to be held unchanged by whoever already has the blocks it removes.

Snapshot names may contain "-", so put spaces around operators ("june4 - june3", not "june4-june3").

Reports blocks, bytes and extents (runs of consecutive VBNs) without reading any data block: one pass over the planes named. This is the dry run of a dump: "june5 + june4 - june3" is what a level-1 dump at june5 over a level 0 at june3 carries.`;
  static override examples = [
    '<%= config.bin %> image vm.vol "june5 + june4 - june3"',
    '<%= config.bin %> image vm.vol "active - june7" --ranges',
    '<%= config.bin %> image vm.vol "june3 & june9" --json',
  ];
  static override args = {
    volume: Args.string({ description: 'Volume file or block device.', required: true }),
    expression: Args.string({ description: 'Plane expression, e.g. "june5 + june4 - june3".', required: true }),
  };
  static override flags = {
    ranges: Flags.boolean({ char: 'r', description: 'List the VBN ranges of the image.' }),
  };

  async run() {
    const { args, flags } = await this.parse(Image);
    const img = await withVolumeAccess(args.volume, { write: false }, (vol) => vol.image(args.expression, { ranges: flags.ranges }, this.progress()));
    this.say(`${img.expression}: ${img.blocks} blocks, ${formatSize(img.bytes)}, ${img.extents} extents`);
    if (img.ranges) for (const [first, count] of img.ranges) this.say(count === 1 ? `  ${first}` : `  ${first}-${first + count - 1} (${count})`);
    return img;
  }
}
