import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Flags } from '@oclif/core';
import { ImgstreamCommand } from './_cli/base.js';
import { runDemo } from '../src/demo/index.js';
import { formatSize, parseSize } from '../src/core/size.js';
import { InvalidInputError } from '../src/core/errors.js';

/** Fewer blocks than this leave too little room for the demo's snapshots and map blocks (volume full). */
const DEMO_MIN_BLOCKS = 64;

export default class Demo extends ImgstreamCommand {
  static override summary = 'Run the main jobs on a built-in demo volume and check every result.';
  static override description = `Creates a volume, imports a disk image, takes snapshot monday, changes 5% of the disk and takes tuesday, changes 2% more and takes wednesday, shows storage images, exports every snapshot and checks it is byte-identical to the image it was taken from, and checks the volume. Then the backup jobs: dumps at level 0 (monday), 1 (tuesday) and 2 (wednesday) into a catalog of its own, verifies the three streams as a chain, restores the chain into a new volume and compares each of its snapshots byte for byte; mirrors the volume to a second volume (a full transfer), changes 1% of the disk, updates the mirror (an incremental transfer of the blocks marked since) and compares the mirror's disk byte for byte after each. Anything that differs ends the demo with the "corrupt" exit code (9). Works in a new temporary directory removed afterwards, unless --dir is given (then kept); the user's catalog and mirror state are not touched. A --dir that already holds any file the demo makes (demo.vol, catalog.json, monday.raw, monday.l0, mirror.vol...) is refused before anything is written, with the "exists" exit code (6): the demo writes those files and removes some again. About 5 s for the default 64M on two cores.`;
  static override examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --dir /tmp/imgstream-demo --size 256M'];
  static override flags = {
    dir: Flags.string({ helpValue: 'DIR', description: 'Directory to work in (kept afterwards; refused when it already holds a file the demo makes).' }),
    size: Flags.string({ helpValue: 'SIZE', description: `Logical disk size of the demo volume (at least ${DEMO_MIN_BLOCKS} blocks).`, default: '64M' }),
    'block-size': Flags.string({ helpValue: 'BYTES', description: 'Block size of the demo volume.', default: '4K' }),
  };

  async run() {
    const { flags } = await this.parse(Demo);
    const size = parseSize(flags.size, 'size');
    const blockSize = parseSize(flags['block-size'], 'block size');
    if (blockSize > 0 && size / blockSize < DEMO_MIN_BLOCKS) {
      const least = DEMO_MIN_BLOCKS * blockSize;
      throw new InvalidInputError(`--size ${flags.size} holds ${Math.floor(size / blockSize)} blocks of ${formatSize(blockSize)}: the demo needs at least ${DEMO_MIN_BLOCKS}`, `give --size ${least % (1 << 20) === 0 ? `${least / (1 << 20)}M` : `${least / 1024}K`} or more`);
    }
    const dir = flags.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-demo-'));
    try {
      const r = await runDemo(dir, { size, blockSize }, this.progress());
      for (const s of r.steps) this.say(`${s.step.padEnd(7)} ${s.detail}`);
      this.say('storage images:');
      for (const i of r.images) this.say(`  ${i.expression.padEnd(30)} ${String(i.blocks).padStart(7)} blocks ${formatSize(i.bytes).padStart(10)} ${String(i.extents).padStart(6)} extents`);
      this.say(`demo passed: snapshots exported, the level 0-1-2 chain verified and restored, the mirror updated, all byte-identical; volumes consistent${flags.dir ? ` (files kept in ${dir})` : ''}`);
      return r;
    } finally {
      // (--dir '' is refused, and must not remove the current directory)
      if (flags.dir === undefined) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}
