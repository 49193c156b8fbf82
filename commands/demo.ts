import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Flags } from '@oclif/core';
import { ImgstreamCommand } from './_cli/base.js';
import { runDemo } from '../src/demo/index.js';
import { formatSize, parseSize } from '../src/size.js';

export default class Demo extends ImgstreamCommand {
  static override summary = 'Run the main job on a built-in demo volume and verify it.';
  static override description = `Creates a volume, imports a disk image, takes snapshot monday, changes 5% of the disk and takes tuesday, changes 2% more and takes wednesday, shows storage images (what level 0/1/2 dumps would carry), exports every snapshot and checks it is byte-identical to the image it was taken from, and checks the volume. Works in a new temporary directory removed afterwards, unless --dir is given (then kept).`;
  static override examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --dir /tmp/imgstream-demo --size 256M'];
  static override flags = {
    dir: Flags.string({ helpValue: 'DIR', description: 'Directory to work in (kept afterwards).' }),
    size: Flags.string({ helpValue: 'SIZE', description: 'Logical disk size of the demo volume.', default: '64M' }),
    'block-size': Flags.string({ helpValue: 'BYTES', description: 'Block size of the demo volume.', default: '4K' }),
  };

  async run() {
    const { flags } = await this.parse(Demo);
    const size = parseSize(flags.size, 'size');
    const blockSize = parseSize(flags['block-size'], 'block size');
    const dir = flags.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-demo-'));
    try {
      const r = await runDemo(dir, { size, blockSize }, this.progress());
      for (const s of r.steps) this.say(`${s.step.padEnd(7)} ${s.detail}`);
      this.say('storage images:');
      for (const i of r.images) this.say(`  ${i.expression.padEnd(30)} ${String(i.blocks).padStart(7)} blocks ${formatSize(i.bytes).padStart(10)} ${String(i.extents).padStart(6)} extents`);
      this.say(`demo passed: every snapshot exported byte-identical, volume consistent${flags.dir ? ` (files kept in ${dir})` : ''}`);
      return r;
    } finally {
      if (!flags.dir) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}
