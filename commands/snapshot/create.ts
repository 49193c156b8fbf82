import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { validateUserSnapshotName } from '../../src/volume/snapshot-name.js';
import { withIdleJournal } from '../../src/journal/idle-journal.js';
import { journalJson, journalNote } from '../_cli/journal-note.js';

export default class SnapshotCreate extends ImgstreamCommand {
  static override summary = 'Take a snapshot of the active file system.';
  static override description = `A snapshot is the state of a consistency point: a saved root plus a copy of the active plane, so it costs one pass over the plane, never a walk of the map. A regular snapshot pins its blocks until it is deleted. A --shadow snapshot lets the allocator reuse its blocks when nothing else is free (its bit is cleared on reuse, and it can no longer be exported once that happened); a --master snapshot is one replicas synchronise to.

While the volume is being served (imgstream serve nbd), the server takes the snapshot between two client requests: it holds every write the server received before it. On a volume with a write journal (served with --journal before) that nobody serves now, the command records the snapshot in the journal, as the server would, so it reaches protection destinations (imgstream protect); a journal it cannot open is said on the line, and the snapshot is taken anyway.

Names: 1-64 characters from A-Z a-z 0-9 _ . : - starting with a letter, digit or _; "active", "moa", "moa.0" and "moa.1" are reserved (the planes of image expressions), and so are names beginning with "mirror." (a mirror update's own snapshots: it deletes the older ones), in any mix of upper and lower case.`;
  static override examples = [
    '<%= config.bin %> snapshot create vm.vol monday',
    '<%= config.bin %> snapshot create vm.vol hourly-2026-11-23T10 --shadow',
    '<%= config.bin %> snapshot create vm.vol weekly-47 --master',
  ];
  static override args = {
    volume: Args.string({ description: 'Volume file or block device.', required: true }),
    name: Args.string({ description: 'Name of the new snapshot.', required: true }),
  };
  static override flags = {
    shadow: Flags.boolean({ description: 'Let the allocator reuse this snapshot\'s blocks (it stops pinning them).' }),
    // a master is what replicas synchronise to: one whose blocks the allocator may take would fail them
    master: Flags.boolean({ description: 'Mark it as a master snapshot for replication (it pins its blocks: not with --shadow).', exclusive: ['shadow'] }),
  };

  async run() {
    const { args, flags } = await this.parse(SnapshotCreate);
    const name = validateUserSnapshotName(args.name);
    const opts = { shadow: flags.shadow, master: flags.master };
    const { result: e, journal } = await withVolumeAccess(args.volume, { write: true }, async (vol) =>
      vol.kind === 'local' ? withIdleJournal(vol.volume, () => vol.volume.createSnapshot(name, opts)) : { result: await vol.createSnapshot(name, opts), journal: undefined },
    );
    this.say(`snapshot ${e.name} created (${e.blocks} blocks, CP ${e.generation})${journalNote(journal)}`);
    return { ...snapshotJson(e), ...journalJson(journal) };
  }
}

export function snapshotJson(e: import('../../src/format/snapshot-entry.js').SnapshotEntry) {
  return {
    name: e.name,
    id: e.id,
    created: new Date(e.createdMs).toISOString(),
    shadow: e.shadow,
    master: e.master,
    blocks: e.blocks,
    /** What the snapshot's plane holds now (a shadow snapshot loses the blocks the allocator reuses). */
    heldBlocks: e.blocks - e.reusedBlocks,
    mappedBlocks: e.mappedBlocks,
    generation: e.generation,
    reusedBlocks: e.reusedBlocks,
  };
}
