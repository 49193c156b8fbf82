import path from 'node:path';
import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState, stateFlag } from '../_cli/mirror-flags.js';
import { withVolumeAccess } from '../../src/control/index.js';
import { replayIdleJournal } from '../../src/journal/idle-journal.js';
import { BusyError } from '../../src/core/errors.js';
import { snapshotJson } from './create.js';
import { catalogFlag, openCatalog } from '../_cli/catalog-flag.js';
import { dumpsBuiltOnNext, isSnapshotOf, levelsBuiltOnNext, ownRecords, type DumpRecord } from '../../src/catalog/index.js';
import { uuidOfVolumeAt } from '../../src/volume/volume-uuid.js';
import type { SnapshotEntry } from '../../src/format/snapshot-entry.js';

export default class SnapshotDelete extends ImgstreamCommand {
  static override summary = 'Delete a snapshot, freeing the blocks no other plane holds.';
  static override description = `When the catalog records the snapshot as the top of a volume's newest dump at some level, the line says so: a dump one level above it is then refused (it has no base), and so is every level above that up to the lowest level dumped since (the top of the newest level 0 refuses levels 1 to 9). To free a dump's top and keep building levels on it, make it a shadow snapshot instead (imgstream snapshot shadow).

A master snapshot that a known replica has not passed yet (its newest master is not newer: "replicate pull" recorded it) is kept, since that replica's next pull starts from it: --force deletes it anyway (the replica's next pull then waits for a newer master, and starts from an older snapshot both hold, or is a full copy).

Likewise the newest snapshot a mirror of the volume holds (its last update's, as the mirror state records it: --state), which its next update builds on, is kept until that update replaces it: --force deletes it anyway (the next update then starts from an older snapshot both hold, or is a full copy, which a mirror as full as its source may not have room for).`;
  static override examples = ['<%= config.bin %> snapshot delete vm.vol monday', '<%= config.bin %> snapshot delete vm.vol release-1 --force'];
  static override args = {
    volume: Args.string({ description: 'Volume file or block device.', required: true }),
    name: Args.string({ description: 'Snapshot to delete.', required: true }),
  };
  static override flags = {
    force: Flags.boolean({ description: 'Delete a master snapshot even when a known replica still needs it, or the newest snapshot a mirror holds.' }),
    state: stateFlag,
    catalog: { ...catalogFlag, description: `Catalog consulted to say whether the snapshot is the base of a next dump level (only read). ${catalogFlag.description}` },
  };

  async run() {
    const { args, flags } = await this.parse(SnapshotDelete);
    let bases: DumpRecord[] = [];
    let levels: number[] = [];
    const e = await withVolumeAccess(args.volume, { write: true }, async (vol) => {
      const s = (await vol.snapshots()).find((x) => x.name === args.name);
      // read before the delete: a --catalog that cannot be read refuses with nothing changed
      if (s) ({ bases, levels } = baseOfNext(flags.catalog, (await vol.info()).uuid, args.volume, await vol.snapshots(), s));
      if (s?.master && !flags.force) {
        const holding = openState(flags.state).replicasHolding((await vol.info()).uuid, s);
        if (holding.length) {
          // a replica at this master pulls from it next; one still behind it has not passed it yet
          const at = holding.filter((r) => r.top.id === s.id).map((r) => r.replica);
          const behind = holding.filter((r) => r.top.id !== s.id).map((r) => `${r.replica} (at "${r.top.name}")`);
          const why = [at.length ? `it is the newest master of replica(s) ${at.join(', ')}, whose next pull starts from it` : '', behind.length ? `replica(s) ${behind.join(', ')} have not passed it yet` : ''].filter(Boolean).join('; ');
          throw new BusyError(`${args.volume}: master snapshot "${s.name}" is kept: ${why}`, at.length ? 'pull those replicas first, or pass --force (their next pull then waits for a newer master)' : 'pull those replicas first, or pass --force');
        }
      }
      if (s && !flags.force) {
        // a mirror's next update builds on the newest snapshot it holds: without it, an older one both hold, or a full copy
        const mirrors = openState(flags.state).relationshipsOf((await vol.info()).uuid, args.volume).filter((r) => r.lastSuccess !== null && isSnapshotOf(r.lastSuccess.top, s));
        if (mirrors.length) {
          throw new BusyError(
            `${args.volume}: snapshot "${s.name}" is kept: it is the newest one mirror${mirrors.length > 1 ? 's' : ''} ${mirrors.map((r) => r.destination).join(', ')} hold${mirrors.length > 1 ? '' : 's'}, whose next update builds on it`,
            'update those mirrors first (the update replaces it with a newer one), or pass --force (their next update then starts from an older snapshot both hold, or is a full copy)',
          );
        }
      }
      // (a journal's writes a killed server acknowledged go in first, as when it is served again)
      if (vol.kind === 'local') replayIdleJournal(vol.volume);
      return vol.deleteSnapshot(args.name);
    });
    const tops = bases.map((d) => `the level ${d.level} dump ${d.id.slice(0, 8)} (${d.date})`).join(' and ');
    const refused = levelRuns(levels);
    this.say(`snapshot ${e.name} deleted${bases.length ? `: it was the top of ${tops}, so a level ${refused} dump of ${args.volume} is now refused (take a lower level next; a dump's top made a shadow snapshot, with imgstream snapshot shadow, stays a base)` : ''}`);
    return { ...snapshotJson(e), refusedLevels: levels };
  }
}

/** Levels as the line says them: runs of consecutive ones as "2 to 9", the runs joined by "or". */
function levelRuns(levels: number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < levels.length; ) {
    let j = i;
    while (j + 1 < levels.length && levels[j + 1] === levels[j] + 1) j++;
    runs.push(j === i ? `${levels[i]}` : `${levels[i]} to ${levels[j]}`);
    i = j + 1;
  }
  return runs.join(' or ');
}

/** The catalog's dumps whose top is `s` and that a next level would build on, and the levels then refused (the default catalog unreadable: none, it only adds to the message). */
function baseOfNext(catalog: string | undefined, uuid: string, volume: string, snapshots: SnapshotEntry[], s: SnapshotEntry): { bases: DumpRecord[]; levels: number[] } {
  try {
    // this copy's dumps, as a dump plans from them (a replica restored from the volume shares its
    // uuid), taken from this path: another copy's dumps of snapshots it holds are not its own
    const here = path.resolve(volume);
    const ours = ownRecords(openCatalog(catalog).forVolume(uuid), volume, uuidOfVolumeAt, (d) => snapshots.some((x) => isSnapshotOf(d.top, x))).filter((d) => d.volume.path === null || path.resolve(d.volume.path) === here);
    return { bases: dumpsBuiltOnNext(ours, s), levels: levelsBuiltOnNext(ours, s) };
  } catch (err) {
    if (catalog !== undefined) throw err;
    return { bases: [], levels: [] };
  }
}
