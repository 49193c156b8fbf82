import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { snapshotJson } from './create.js';
import { journalJson, journalNote } from '../_cli/journal-note.js';
import { withIdleJournal } from '../../src/journal/idle-journal.js';
import { validateUserSnapshotName } from '../../src/volume/snapshot-name.js';

export default class SnapshotRename extends ImgstreamCommand {
  static override summary = 'Rename a snapshot.';
  static override description = 'On a volume with a write journal (served with --journal before), the rename is journaled, through its server or, when nobody serves it, by this command, so protection destinations (imgstream protect) answer to the new name; a journal it cannot open is said on the line, and the rename is made anyway.';
  static override examples = ['<%= config.bin %> snapshot rename vm.vol monday before-upgrade'];
  static override args = {
    volume: Args.string({ description: 'Volume file or block device.', required: true }),
    old: Args.string({ description: 'Current name.', required: true }),
    new: Args.string({ description: 'New name (as snapshot create takes: not "active" or "moa", nor beginning with "mirror.").', required: true }),
  };

  async run() {
    const { args } = await this.parse(SnapshotRename);
    const to = validateUserSnapshotName(args.new);
    const { result: e, journal } = await withVolumeAccess(args.volume, { write: true }, async (vol) =>
      vol.kind === 'local' ? withIdleJournal(vol.volume, () => vol.volume.renameSnapshot(args.old, to)) : { result: await vol.renameSnapshot(args.old, to), journal: undefined },
    );
    this.say(`snapshot ${args.old} renamed to ${e.name}${journalNote(journal)}`);
    return { ...snapshotJson(e), ...journalJson(journal) };
  }
}
