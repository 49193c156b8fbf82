import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { replayIdleJournal } from '../../src/journal/idle-journal.js';
import { MIRROR_SNAPSHOT_PREFIX } from '../../src/volume/snapshot-name.js';
import { snapshotJson } from './create.js';

export default class SnapshotShadow extends ImgstreamCommand {
  static override summary = 'Make a snapshot a shadow one: it stops pinning its blocks and stays the base of the next incremental dump.';
  static override description = `What to do with the top snapshot of your last dump, instead of deleting it, when retention wants its space back (like a zfs bookmark). Its blocks become reusable: the allocator takes them when nothing else is free, clearing their bits, so the snapshot holds fewer blocks as it does (snapshot list shows reused:N) and can no longer be exported once that happened. It stays the base of the next dump at a higher level: that dump carries what changed since it plus every block the allocator reused, so the level 1 restores exactly onto the level 0 (a deleted base makes dump refuse the level). Through the server when the volume is served; a snapshot a running export or dump reads (pinned) is refused. Master snapshots (replicas synchronise to them) and a mirror's own snapshots (${MIRROR_SNAPSHOT_PREFIX}*) stay regular. A snapshot that is a shadow one already is left as it is.`;
  static override examples = ['<%= config.bin %> snapshot shadow vm.vol sunday-l0', '<%= config.bin %> snapshot shadow vm.vol sunday-l0 --json'];
  static override args = {
    volume: Args.string({ description: 'Volume file or block device.', required: true }),
    name: Args.string({ description: 'Snapshot to make a shadow one.', required: true }),
  };

  async run() {
    const { args } = await this.parse(SnapshotShadow);
    // (the snapshot as it was, for the line: one that is a shadow one already is left as it is)
    const { before, e } = await withVolumeAccess(args.volume, { write: true }, async (vol) => {
      // (a journal's writes a killed server acknowledged go in first, as when it is served again)
      if (vol.kind === 'local') replayIdleJournal(vol.volume);
      return { before: (await vol.snapshots()).find((x) => x.name === args.name), e: await vol.shadowSnapshot(args.name) };
    });
    this.say(before?.shadow ? `snapshot ${e.name} is a shadow snapshot already` : `snapshot ${e.name} is a shadow snapshot now: its ${e.blocks} blocks are reusable, and it stays the base of the next incremental dump`);
    return snapshotJson(e);
  }
}
