import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { CorruptError } from '../../src/core/errors.js';
import { Volume } from '../../src/volume/index.js';
import { replayIdleJournal } from '../../src/journal/idle-journal.js';

export default class VolumeCheck extends ImgstreamCommand {
  static override summary = 'Verify a volume\'s consistency.';
  static override description = `Checks both root records, then walks the logical map of the active file system and of every snapshot: every block they reach must be inside the volume, set in its plane (so not free) and reached once; each plane must hold nothing its map does not reach; the counters in the root record must agree. Reads map blocks only, never data blocks. Exits with the "corrupt" code when a problem is found. A volume whose restore stopped half way (a kill -9 while it rewrote the active disk in place) is checked too: its root records and snapshots, not its active disk (part old, part new, map included), which waits for that restore to be run again; the check says so. While the volume is being served (imgstream serve nbd), the server checks it as of a consistency point it takes for the check (its clients wait meanwhile).

A damaged snapshot table entry (its checksum fails) is reported as a problem; the other snapshots are checked, and commands that only read (volume export, volume info, snapshot list, image) keep working, while commands that write refuse the volume (dump too: it takes a snapshot). --drop-damaged-snapshots empties such entries in one CP (their snapshots are lost: what an entry recorded, its map root included, cannot be trusted) and then checks the volume; the blocks only they held become free.`;
  static override examples = ['<%= config.bin %> volume check vm.vol', '<%= config.bin %> volume check vm.vol --json', '<%= config.bin %> volume check vm.vol --drop-damaged-snapshots'];
  static override flags = {
    'drop-damaged-snapshots': Flags.boolean({ description: 'Empty the snapshot table entries that are damaged (their snapshots are lost), then check. The volume must not be served.' }),
  };
  static override args = { volume: Args.string({ description: 'Volume file or block device.', required: true }) };

  async run() {
    const { args, flags } = await this.parse(VolumeCheck);
    if (flags['drop-damaged-snapshots']) {
      const vol = Volume.open(args.volume, { write: true, dropDamagedSnapshots: true, unfinishedRestore: true });
      try {
        // (a journal's writes a killed server acknowledged go in before the CP that drops them)
        if (vol.damagedSnapshotSlots.length > 0) replayIdleJournal(vol);
        const dropped = vol.dropDamagedSnapshots();
        this.say(dropped.length === 0 ? `${args.volume}: no damaged snapshot table entry` : `${args.volume}: dropped damaged snapshot table entries ${dropped.join(', ')} (their snapshots are lost)`);
      } finally {
        vol.close();
      }
    }
    const report = await withVolumeAccess(args.volume, { write: false, unfinishedRestore: true }, (vol) => vol.check(this.progress()));
    for (const s of report.rootSlots) this.say(`root slot ${s.slot}: ${s.valid ? `valid, generation ${s.generation}` : `invalid (${s.reason})`}`);
    for (const t of report.trees) {
      const status = t.skipped ? `skipped: ${t.skipped}` : t.problems.length ? `${t.problems.length} problem(s)` : 'ok';
      this.say(`${t.name}: ${t.mapNodes} map blocks, ${t.dataBlocks} data blocks, plane ${t.planeBlocks} blocks: ${status}`);
      for (const p of t.problems) this.say(`  ${p}`);
    }
    for (const p of report.problems) this.say(`problem: ${p}`);
    if (!report.ok) {
      const n = report.problems.length + report.trees.reduce((a, t) => a + t.problems.length, 0);
      const hint = this.jsonEnabled() ? 'the report is in error.details' : 'see the lines above';
      throw new CorruptError(`${args.volume}: check found ${n} problem(s)`, hint).withDetails(report);
    }
    if (report.restoreUnfinished) this.say(`${args.volume}: snapshots clean, but a restore into it is unfinished: it stopped while it rewrote the active disk in place (part old, part new); run that restore again to finish it`);
    else this.say(`${args.volume}: clean`);
    return report;
  }
}
