// restore --as-of: the chain of dumps from the catalog, opened on their media.
import { chainFor, dumpsOfVolume, isPipePlace, isSnapshotOf, liveCopies, matchingAsOf, ownRecords, parseAsOfDate, sameSnapshotIdentity, targetAsOf, type Catalog, type DumpRecord } from '../catalog/index.js';
import { uuidOfVolumeAt } from '../volume/volume-uuid.js';
import { optionsForRecorded, s3ObjectExists } from '../media/s3/index.js';
import { InvalidInputError, NotFoundError, UsageError } from '../core/errors.js';
import type { StreamSource } from '../media/medium.js';
import { sourceForPosition, type SourceOptions } from '../media/resolve.js';
import { Volume } from '../volume/volume.js';
import { unfinishedNeedsStream } from './restore-unfinished.js';
import fs from 'node:fs';
import path from 'node:path';

/** The uuid of the volume at `volumePath`, from its root record: no lock taken, so a served or busy volume names itself too. */
function uuidOf(volumePath: string): string {
  const view = Volume.openView(volumePath);
  try {
    return view.rootRecord.uuid;
  } finally {
    view.close();
  }
}

/**
 * The sources of the chain that restores `volumePath` as of `asOf`. The catalog's dumps are
 * narrowed to one volume: the one at `volumePath` when it exists, else the one `volume`
 * names (a uuid or prefix, or a volume path); an answer that depends on an unnamed volume
 * is refused.
 */
export async function sourcesForChain(catalog: Catalog, volumePath: string, asOf: string, opts: SourceOptions & { volume?: string } = {}): Promise<StreamSource[]> {
  let dumps = catalog.read();
  if (dumps.length === 0) throw new NotFoundError(`the catalog ${catalog.file} has no dumps`);
  if (opts.volume !== undefined) {
    const named = opts.volume;
    dumps = dumpsOfVolume(dumps, named, fs.existsSync(named) && fs.statSync(named).isFile() ? uuidOf(named) : undefined);
  }
  // restoring onto an existing volume: only its own dumps
  if (fs.existsSync(volumePath)) {
    const uuid = uuidOf(volumePath);
    if (opts.volume !== undefined && dumps[0].volume.uuid !== uuid) throw new UsageError(`--volume ${opts.volume} is not the volume at ${volumePath} (${uuid.slice(0, 8)})`, 'a chain restores only onto its own volume: leave out --volume, or restore into a new path');
    dumps = dumps.filter((d) => d.volume.uuid === uuid);
    if (dumps.length === 0) throw new NotFoundError(`the catalog ${catalog.file} has no dumps of ${volumePath}`);
  }
  // copies of one volume (a replica restored from its dumps keeps its uuid): the dumps of the
  // copy --volume names (and those of snapshots it holds too); into a new volume without it,
  // two copies dumped are two volumes to choose from. Onto an existing one, every copy's
  // dumps may bring it on: its chain goes by snapshot identity
  const copyPath = opts.volume !== undefined && uuidOfVolumeAt(opts.volume) !== null ? opts.volume : null;
  if (copyPath !== null) {
    const view = Volume.openView(copyPath);
    const snaps = view.snapshots();
    view.close();
    const all = dumps;
    dumps = ownRecords(dumps, copyPath, uuidOfVolumeAt, (d) => snaps.some((x) => isSnapshotOf(d.top, x)));
    // a snapshot another copy took and dumped: named as such (it said no dump had that top at all)
    const others = all.filter((d) => d.top.name === asOf && !dumps.includes(d));
    if (others.length > 0 && !dumps.some((d) => d.top.name === asOf) && parseAsOfDate(asOf) === null) {
      const at = [...new Set(others.map((d) => d.volume.path ?? d.volume.uuid.slice(0, 8)))];
      throw new NotFoundError(`no dump of ${copyPath} has top snapshot "${asOf}": the catalog's dump${others.length > 1 ? 's' : ''} of it ${others.length > 1 ? 'are' : 'is'} of another copy of the volume (${at.join(', ')})`, `name that copy with --volume ${at[0]}`);
    }
  }
  else if (!fs.existsSync(volumePath)) {
    // the copies whose dumps the name or date matches: a snapshot taken and dumped on one copy
    // only is that copy's, though the other copy's dumps are in the catalog too
    const uuid = targetAsOf(dumps, asOf).volume.uuid;
    const { matching, what } = matchingAsOf(dumps, asOf);
    const mine = matching.filter((d) => d.volume.uuid === uuid);
    // one snapshot that both copies dumped (a replica dumping a snapshot it was restored with) is one state: nothing to choose
    const oneState = what.startsWith('snapshot') && mine.every((d) => sameSnapshotIdentity(d.top, mine[0].top));
    const copies = oneState ? [] : liveCopies(mine, uuidOfVolumeAt);
    if (copies.length > 1) {
      throw new UsageError(`${asOf} matches dumps of ${copies.length} copies of volume ${uuid.slice(0, 8)}: ${copies.join(', ')} (a volume restored from dumps keeps their uuid)`, 'name the one you mean with --volume PATH');
    }
  }
  let onVolume: Array<{ id: number; name: string; generation: number; createdMs: number }> | null = null;
  let unfinished = false;
  if (fs.existsSync(volumePath)) {
    // (its table only: one a killed restore left unfinished is read too, for this restore finishes it)
    const vol = Volume.open(volumePath, { write: false, unfinishedRestore: true });
    try {
      onVolume = vol.snapshots().map(({ id, name, generation, createdMs }) => ({ id, name, generation, createdMs }));
      unfinished = vol.restoreUnfinished;
    } finally {
      vol.close();
    }
  }
  // a dump whose top the volume holds: by identity (renamed at the source since, the volume
  // follows), by id and name where the record has no generation
  const holds = onVolume === null ? undefined : (d: DumpRecord) => onVolume!.some((x) => isSnapshotOf(d.top, x) && (d.top.generation !== undefined || x.name === d.top.name));
  // a stream file or object that is gone is found before the first stream is applied (a
  // level 0 of hours must not be restored only to stop at a missing level 1), and another
  // dump of the same snapshot is taken in its place when there is one. Objects are looked
  // for only once a chain would use them (one HEAD each), files at once; onto an existing
  // volume, not those of the dumps it passes over (below): the volume holds their state, and
  // a level 0 on a store without credentials here, or down, failed a restore that reads
  // only a level 1
  const there = new Map<string, boolean>();
  const passedOver = (c: DumpRecord[]): number => {
    let k = holds === undefined ? 0 : c.length;
    while (k > 0 && !holds!(c[k - 1])) k--;
    return k;
  };
  const ownPath = copyPath ?? (fs.existsSync(volumePath) ? volumePath : null);
  const own = ownPath === null ? null : path.resolve(ownPath);
  let chain: DumpRecord[];
  for (;;) {
    chain = chainFor(
      dumps,
      asOf,
      (d) => there.get(d.id) ?? (d.media.kind === 'file' ? fs.existsSync(d.media.location) : !isPipePlace(d.media)),
      // the copy --volume names (or the volume restored onto): its own dumps before another copy's of the same snapshots (its keys, its media)
      (d) => own !== null && d.volume.path !== null && path.resolve(d.volume.path) === own,
      holds,
    );
    const unknown = chain.slice(passedOver(chain)).filter((d) => !there.has(d.id));
    if (unknown.length === 0) break;
    for (const d of unknown) there.set(d.id, await mediumHolds(d, opts));
  }
  // onto an existing volume: the dumps up to the newest one whose top it holds (restored
  // before, a level 0 among them) are not applied again, even where retention has deleted
  // an older one's top since; the chain goes on from there
  if (onVolume !== null && holds !== undefined) {
    const k = passedOver(chain);
    const newest = Math.max(0, ...onVolume.map((x) => x.id));
    if (k === chain.length) {
      const top = chain.at(-1)!.top;
      // holding the chain's top is not enough while a restore into it is unfinished: that restore's stream is needed
      if (top.id === newest && unfinished) throw unfinishedNeedsStream({ newest: onVolume.find((x) => x.id === newest)?.name }, volumePath, [`the chain as of ${asOf}`]);
      if (top.id === newest) return [];
      throw new InvalidInputError(`${volumePath}: holds snapshot "${top.name}" and newer ones already: restoring as of ${asOf} would take it back in time`, `restore as of ${asOf} into a new path`);
    }
    chain = chain.slice(k);
  }
  // a dump that went through a pipe is named by reopen below, with what to do instead
  const gone = chain.find((d) => !there.get(d.id) && !isPipePlace(d.media));
  if (gone) {
    const [what, none] = gone.media.kind === 's3' ? ['object', 'no such object'] : ['file', 'no such file'];
    throw new NotFoundError(
      `${what} ${gone.media.location}: ${none}: the catalog records dump ${gone.id.slice(0, 8)} (level ${gone.level}, top snapshot "${gone.top.name}") there, which the chain as of ${asOf} needs`,
      `if it was moved, record it where it is now: imgstream catalog rebuild --from NEWPLACE`,
    );
  }
  // each source must still hold the dump the catalog records there (a file may have been overwritten since)
  return chain.map((d) => Object.assign(reopen(d, opts), { expected: { streamId: d.id, top: d.top.name, ...(d.encrypted ? { encrypted: true } : {}) } }));
}

/** The dump's source where the catalog records it; one that cannot be read back from there (a pipe, a drive) is named. */
function reopen(d: DumpRecord, opts: SourceOptions): StreamSource {
  try {
    return sourceForPosition(d.media, opts);
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError(`dump ${d.id.slice(0, 8)} of the chain (level ${d.level}, top snapshot "${d.top.name}"): ${err.message}`, err.hint);
    throw err;
  }
}

/** Whether a dump's file or object is still there (other media are found out when read). */
async function mediumHolds(d: DumpRecord, opts: SourceOptions): Promise<boolean> {
  if (isPipePlace(d.media)) return false; // nothing to read back: another dump of the same state is taken when there is one
  if (d.media.kind === 'file') return fs.existsSync(d.media.location);
  if (d.media.kind === 's3') return s3ObjectExists(d.media.location, optionsForRecorded(d.media, opts.s3));
  return true;
}
