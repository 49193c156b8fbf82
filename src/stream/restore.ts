// Restore: apply image streams to a volume, block for block at the same VBNs. A level-0
// stream creates the volume (same identity and geometry as its source); each further
// stream must find its base snapshot on the volume. Blocks go only to VBNs the volume's
// last CP does not use, snapshot planes only to free slots, so nothing committed is
// touched until the stream's trailer has been checked; then one CP installs the
// snapshots and makes the active file system the stream's top snapshot. A restore that
// fails or is killed leaves the volume at its previous CP (a new volume does not appear).
import fs from 'node:fs';
import { CorruptError, InvalidInputError, NotFoundError, ExistsError, VolumeFullError } from '../core/errors.js';
import { applyMapDelta, type StreamHeader } from '../format/image-stream.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { SourceStream, StreamSource } from '../media/medium.js';
import { RecordedEncryption, refuseUnencryptedInPlace } from './chain-encryption.js';
import type { DumpRecord } from '../catalog/index.js';
import { noProgress, type Progress } from '../core/progress.js';
import { Volume } from '../volume/volume.js';
import { SparseBitmap } from '../volume/sparse-bitmap.js';
import { WriteBehind } from '../volume/write-behind.js';
import { OccupancyCursor } from '../volume/occupancy.js';
import { PLANE_ACTIVE } from '../volume/layout.js';
import { readImageStream, type ReleaseBuffer } from './stream-reader.js';
import type { KeyOption } from '../crypt/index.js';
import { removeStaleTemp, tempBeside } from '../fs/stale-temp.js';
import { refuseDanglingLink } from '../fs/link-target.js';
import { sayOnStop } from '../fs/stop-cleanup.js';
import { crashPoint } from '../volume/crash-point.js';
import { createForStream, openTarget } from './restore-target.js';
import type { StreamSummary } from './verify.js';
import type { VolumePick } from './volume-pick.js';
import type { HeldStream, HeldCandidate } from './restore-held.js';
import { anotherCopys, checkFits } from './restore-fits.js';
import { StageFile, removeStaleStage } from './restore-stage.js';
import { tellJournalChanges, tellJournalSnapshots } from './restore-journal.js';
import { clearUnfinishedNote, noteUnfinished, unfinishedNeedsStream } from './restore-unfinished.js';
import { deletedAtSource, renamedAtSource, shadowsAtSource } from './restore-source-table.js';

export interface RestoredStream extends StreamSummary {
  skippedBlocks: number;
  /** Blocks that replaced ones the volume's last CP held (snapshots the source deleted, shadow snapshots). */
  stagedBlocks: number;
  /** Snapshots of the volume that the stream's source had deleted: dropped by the same CP. */
  dropped: string[];
  /** Snapshots of the volume that the stream's source had renamed ("OLD -> NEW"): renamed by the same CP. */
  renamed?: string[];
  /** The volume had no room to journal the staged blocks: a CP of its own dropped the deleted snapshots first. */
  separateDropCp: boolean;
  /** Blocks of the active disk rewritten in place (no room to stage them): the volume was marked unfinished until the last CP. */
  activeInPlace?: number;
  generation: number;
  /** Bytes read from the medium for this stream, when the source counts them (multiplexed tape files). */
  mediaBytesRead?: number;
  /** Where the stream came among those this restore read (1, 2, …), applied or held: output lists them in that order. */
  order: number;
}

export interface RestoreResult {
  volume: string;
  created: boolean;
  streams: RestoredStream[];
  /** Streams given whose top snapshot the volume held already, with nothing after it: not applied. */
  held: HeldStream[];
  blocks: number;
  bytes: number;
}

/** `fresh`: the volume is one this restore creates (it appears only when every stream is in: a kill leaves nothing). */
async function applyStream(vol: Volume, header: StreamHeader, records: AsyncGenerator<import('./stream-reader.js').StreamRecord>, writes: WriteBehind, name: string, display: string, progress: Progress, fresh: boolean): Promise<RestoredStream> {
  const bs = vol.blockSize;
  const existing = new Map(vol.snapshots().map((s) => [s.id, s] as const));
  const incoming = header.snapshots.filter((s) => !existing.has(s.id));
  const dropping = deletedAtSource(vol, header);
  const dropIds = new Set(dropping.map((s) => s.id));
  // snapshots renamed at the source since they came here: they take its names in the CP
  const renames = renamedAtSource(vol, header).filter((r) => !dropIds.has(r.id));
  const nameNow = (x: SnapshotEntry) => renames.find((r) => r.id === x.id)?.to ?? x.name;
  // a snapshot taken here after the base: the volume went its own way since (zfs recv
  // refuses the same); its id may even be one the source gave a snapshot of the stream
  const carried = new Map(header.snapshots.map((s) => [s.id, s] as const));
  for (const s of header.snapshots) {
    const e = existing.get(s.id);
    if (e && e.name === s.name && e.generation === s.generation && e.createdMs !== s.createdMs) throw anotherCopys(name, `its snapshot "${s.name}"`, s.createdMs, `${display} holds one`, e.createdMs);
  }
  // a shadow one at the source is not carried (its blocks may hold the stream's): one a
  // restore brought here stays, and is made a shadow one below (shadowsAtSource)
  const shadowRetained = (header.retained ?? []).filter((r) => r.shadow === true);
  const shadowThere = new Set(vol.snapshots().filter((x) => x.restored === true && shadowRetained.some((r) => r.id === x.id && r.generation === x.generation)).map((x) => x.id));
  const own = header.base ? vol.snapshots().filter((x) => x.id > header.base!.id && !dropIds.has(x.id) && !shadowThere.has(x.id) && !(carried.get(x.id)?.generation === x.generation)) : [];
  if (own.length > 0) {
    throw new InvalidInputError(
      `${name}: ${display} has snapshot${own.length > 1 ? 's' : ''} ${own.map((x) => `"${x.name}"`).join(', ')} taken after this stream's base snapshot "${header.base!.name}" that the stream does not bring (a later stream of the chain was restored already, or they were taken on ${display})`,
      'restore the streams in order, each once; snapshots taken on the volume: delete them (export them first to keep their data), or restore into a new volume',
    );
  }
  for (const s of header.snapshots) {
    const e = existing.get(s.id);
    if (e && e.generation !== s.generation) throw new InvalidInputError(`${name}: snapshot id ${s.id} is "${e.name}" on ${display} but "${s.name}" in the stream`);
    if (!e && vol.snapshots().some((x) => nameNow(x) === s.name && !dropIds.has(x.id))) throw new ExistsError(`${name}: ${display} already has another snapshot named "${s.name}"`, 'rename or delete it first');
  }
  const free = vol.freeSnapshotSlots();
  if (free.length + dropping.length < incoming.length) {
    const freed = dropping.length > 0 ? ` (${free.length + dropping.length} once the ${dropping.length} its source deleted are dropped)` : '';
    throw new VolumeFullError(`${name}: brings ${incoming.length} snapshots, ${display} has ${free.length} free snapshot slots${freed}`, `free them: imgstream snapshot delete ${display} NAME; imgstream snapshot list ${display} lists them`);
  }
  // the snapshots past the free slots take those of the snapshots the source deleted: those
  // slots stay as the last CP has them until a CP of their own drops them (after the
  // trailer), so the planes of these wait in the stage file until then
  const slotOf = new Map<number, number>(incoming.slice(0, free.length).map((s, i) => [s.id, free[i]]));
  const waiting = incoming.slice(free.length);
  const writtenChunks = new Map<number, Set<number>>(incoming.map((s) => [s.id, new Set<number>()]));
  // snapshots already on the volume that the stream carries again: their blocks are checked, not written
  const alsoHere = header.snapshots.filter((s) => existing.has(s.id)).map((s) => vol.layout.snapshotPlane(existing.get(s.id)!.slot));
  // what must not change: the regular snapshots that stay. The active file system is as
  // the newest snapshot left it (checkFits refuses a volume written to since), so it holds
  // nothing of its own (the snapshots that stay pin its blocks; those of one dropped go
  // with it), and the restore sets it to the stream's top
  // (snapshots that are shadow ones at the source, the base among them, become shadow ones
  // here: the blocks the source's allocator reused, which the stream carries, replace theirs)
  const shadowHere = shadowsAtSource(vol, header);
  const pinned = vol.snapshots().filter((s) => !s.shadow && !dropIds.has(s.id) && !shadowHere.some((x) => x.id === s.id)).map((s) => ({ plane: vol.layout.snapshotPlane(s.slot), what: `snapshot "${s.name}"` }));
  const occupied = new OccupancyCursor(vol);
  // incoming VBNs, held back from the allocator until the CP (a bitmap: bounded like a plane)
  const reserved = new SparseBitmap(vol.layout.wordsPerPlaneBlock);
  // incoming blocks whose VBNs the last CP still holds (a snapshot the source deleted, or a
  // shadow snapshot): kept in a stage file and switched in by the CP
  const stagedBits = new SparseBitmap(vol.layout.wordsPerPlaneBlock);
  const stage = new StageFile(vol.path, display);
  const scratch = Buffer.alloc(bs);
  let claimed = 0; // free VBNs taken for the stream's blocks
  const out: RestoredStream = { stream: name, streamId: header.streamId, level: header.level, base: header.base?.name ?? null, top: header.top.name, snapshots: header.snapshots.map((s) => s.name), blocks: 0, bytes: 0, skippedBlocks: 0, stagedBlocks: 0, separateDropCp: false, dropped: dropping.map((s) => s.name), ...(renames.length ? { renamed: renames.map((r) => `${r.from} -> ${r.to}`) } : {}), generation: 0, order: 0 };
  const baseSnap = header.base ? existing.get(header.base.id) : undefined;
  const basePlane = baseSnap ? vol.layout.snapshotPlane(baseSnap.slot) : -1;
  const node = Buffer.alloc(bs);
  /**
   * Takes VBN v for a block of the stream: 'write' when the caller is to write it there
   * (the VBN is free); 'skip' when it is on the volume already (a snapshot the stream
   * carries again holds it with these contents); 'stage' when the last CP holds the VBN
   * only through snapshots that this restore drops or shadow snapshots, so the block was
   * staged here and the CP replaces it. Anything else is refused.
   */
  const claim = (v: number, block: Buffer): 'write' | 'skip' | 'stage' => {
    if (!(v > 0 && v < vol.nblocks)) throw new CorruptError(`${name}: block for VBN ${v}, outside the volume`);
    if (reserved.has(v) || stage.offsets.has(v)) throw new CorruptError(`${name}: the stream carries the block for VBN ${v} twice`, 'the stream is damaged: run imgstream verify on it');
    if (occupied.has(v)) {
      if (alsoHere.some((p) => vol.testBit(p, v))) {
        vol.readBlock(v, scratch);
        if (!scratch.equals(block)) throw new CorruptError(`${name}: block at VBN ${v} differs from the copy already on ${display}`);
        out.skippedBlocks++;
        return 'skip';
      }
      const holder = pinned.find((p) => vol.testBit(p.plane, v));
      if (holder) {
        throw new InvalidInputError(`${name}: block at VBN ${v} would overwrite ${holder.what} of ${display}`, 'the volume changed since its base snapshot: restore into a new volume');
      }
      stage.put(v, block);
      vol.reserve(v);
      stagedBits.add(v);
      occupied.mark(v);
      out.stagedBlocks++;
      return 'stage';
    }
    vol.reserve(v);
    reserved.add(v);
    occupied.mark(v);
    claimed++;
    return 'write';
  };
  let complete = false;
  progress.start(`restoring ${header.top.name}`, header.image.bytes, 'bytes');
  try {
    for await (const rec of records) {
      if (rec.type === 'plane') {
        const snap = header.snapshots[rec.snapshotIndex];
        const slot = slotOf.get(snap.id);
        const waits = slot === undefined && writtenChunks.has(snap.id);
        if (slot === undefined && !waits) continue; // already on the volume
        rec.chunks.forEach((c, i) => {
          if (c >= vol.layout.planeBlocks) throw new CorruptError(`${name}: PLANE record for a block outside the volume's planes`);
          const block = rec.data.subarray(i * bs, (i + 1) * bs);
          if (waits) stage.putPlane(snap.id, c, block);
          else vol.writeSlotPlane(slot!, c, block);
          writtenChunks.get(snap.id)!.add(c);
        });
      } else if (rec.type === 'data') {
        const { vbns, data } = rec;
        // runs of consecutive free VBNs go out as one write, straight from the record,
        // written behind while the next records are read and checked
        const runs: Array<[number, number]> = [];
        let runStart = -1;
        const endRun = (end: number) => {
          if (runStart >= 0) runs.push([runStart, end]);
          runStart = -1;
        };
        for (let i = 0; i < vbns.length; i++) {
          const v = vbns[i];
          if (claim(v, data.subarray(i * bs, (i + 1) * bs)) !== 'write') {
            endRun(i);
            continue;
          }
          if (runStart >= 0 && v !== vbns[i - 1] + 1) endRun(i);
          if (runStart < 0) runStart = i;
        }
        endRun(vbns.length);
        for (const [a, b] of runs) await writes.write(data.subarray(a * bs, b * bs), vol.layout.vbnOffset(vbns[a]));
        out.blocks += vbns.length;
        out.bytes += data.length;
        progress.update(out.bytes);
      } else if (rec.type === 'mapdelta') {
        // a map block as its differences from the block at the same place in the base's tree
        for (const d of rec.nodes) {
          if (!(basePlane >= 0 && d.base > 0 && d.base < vol.nblocks && vol.testBit(basePlane, d.base))) {
            throw new CorruptError(`${name}: map block for VBN ${d.vbn} is based on VBN ${d.base}, which the base snapshot "${header.base?.name}" does not hold`);
          }
          vol.readBlock(d.base, node);
          applyMapDelta(node, d);
          if (claim(d.vbn, node) === 'write') vol.file.write(node, vol.layout.vbnOffset(d.vbn));
        }
        out.blocks += rec.nodes.length;
        out.bytes += rec.nodes.length * bs;
        progress.update(out.bytes);
      } else if (rec.type === 'trailer') {
        complete = true;
      }
    }
    if (!complete) throw new CorruptError(`${name}: stream ended without its trailer`);
    await writes.drain();
    for (const [id, slot] of slotOf) vol.clearSlotPlaneExcept(slot, writtenChunks.get(id)!);
    vol.file.sync();
    const freeNow = vol.countFree(); // before the drops: their planes hold their blocks until the CP
    // the source's state at the top: what it deleted goes, in the CP that installs the rest
    for (const s of dropping) vol.dropSnapshotEntry(s.name);
    for (const r of renames) vol.renameSnapshotEntry(r.id, r.to);
    for (const x of shadowHere) vol.markShadowEntry(nameNow(x));
    // staged blocks the active file system holds, and the shadow snapshots that hold them with it (see below)
    const inActive = new Set(fresh ? [] : [...stage.offsets.keys()].filter((v) => vol.testBit(PLANE_ACTIVE, v)));
    for (const v of stage.offsets.keys()) vol.reuseShadowBlock(v);
    // Staged blocks travel in the CP's journal, which takes a free block each. Without
    // that much room, a CP of its own drops the deleted snapshots first (a consistent
    // state: the previous one less what the source deleted), freeing their VBNs, and the
    // staged blocks are written in place before the CP that installs the stream.
    // (the rest of the CP's journal: dirty metadata now, the active and mark-on-allocate planes to come)
    const journalRoom = freeNow - claimed - 2 * vol.meta.dirtyCount() - 4 * vol.layout.planeBlocks - 8;
    if (waiting.length > 0 || (stage.offsets.size > 0 && journalRoom < stage.offsets.size)) {
      // Staged blocks that the active file system holds (it is a shadow snapshot's disk:
      // the base made one at the source, or a newest snapshot taken as one) go in the last
      // CP's journal when it has room for them: until that CP, the active disk is what a
      // kill leaves. Without the room, they are written in place after all, and the CP
      // before marks the volume's restore unfinished: a kill leaves its snapshots whole
      // and its active disk mixed, which nothing but this restore, run again, opens (a
      // volume this restore creates appears only once every stream is in).
      const inPlace = inActive.size > Math.max(0, journalRoom);
      if (inPlace) {
        noteUnfinished(display, { stream: name, streamId: header.streamId, top: header.top.name, base: header.base?.name ?? null });
        vol.setRestoreUnfinished(true);
        out.activeInPlace = inActive.size; // (from this CP to the last one runs without a turn of the event loop: no stop signal lands between them, a kill -9 does)
      }
      vol.commit();
      out.separateDropCp = true;
      let written = 0;
      for (const [v, off] of stage.offsets) {
        stage.read(off, scratch);
        if (inActive.has(v) && !inPlace) vol.stageBlock(v, scratch);
        else vol.file.write(scratch, vol.layout.vbnOffset(v)); // that CP's state holds it no more (dropped, a shadow snapshot's bit cleared), or marks the restore unfinished
        if (inPlace && ++written === Math.ceil(stage.offsets.size / 2)) crashPoint('restore-in-place', vol.path);
      }
      // the dropped snapshots' slots are free now: the waiting planes go there
      const freed = vol.freeSnapshotSlots().filter((x) => ![...slotOf.values()].includes(x));
      waiting.forEach((snap, i) => {
        slotOf.set(snap.id, freed[i]);
        for (const [c, off] of stage.planes.get(snap.id) ?? []) {
          stage.read(off, scratch);
          vol.writeSlotPlane(freed[i], c, scratch);
        }
        vol.clearSlotPlaneExcept(freed[i], writtenChunks.get(snap.id)!);
      });
      vol.file.sync();
    } else {
      for (const [v, off] of stage.offsets) {
        stage.read(off, scratch);
        vol.stageBlock(v, scratch);
      }
    }
    const installed: SnapshotEntry[] = [];
    for (const s of incoming) {
      const e: SnapshotEntry = { slot: slotOf.get(s.id)!, id: s.id, name: s.name, shadow: s.shadow, master: s.master, restored: true, createdMs: s.createdMs, mapRoot: s.mapRoot, generation: s.generation, blocks: s.blocks, mappedBlocks: s.mappedBlocks, reusedBlocks: 0 };
      vol.installSnapshot(e);
      installed.push(e);
    }
    // a replica with a write journal: what changes, before the CP commits it
    tellJournalChanges(vol, header.top.name, stage, `${display} was restored into (restore, ${name})`);
    for (const v of reserved.values()) vol.unreserve(v); // now held by the snapshot planes
    for (const v of stagedBits.values()) vol.unreserve(v);
    // they arrived without allocate(): mark them, so a mirror of this volume ships them
    vol.markRecorded(reserved);
    vol.markRecorded(stagedBits);
    vol.resetActiveTo(header.top.name);
    vol.setRestoreUnfinished(false); // this run's, or one stopped before
    vol.commit();
    if (!fresh) clearUnfinishedNote(display);
    tellJournalSnapshots(vol, installed);
    out.generation = vol.rootRecord.generation;
    return out;
  } catch (err) {
    await writes.settle(); // before the volume gives up: nothing of ours is still being written
    for (const v of reserved.values()) vol.unreserve(v);
    for (const v of stagedBits.values()) vol.unreserve(v);
    vol.abort();
    throw err;
  } finally {
    stage.close();
    progress.stop();
  }
}

async function firstHeader(s: SourceStream, release: ReleaseBuffer, key: KeyOption): Promise<{ header: StreamHeader; records: AsyncGenerator<import('./stream-reader.js').StreamRecord> }> {
  const records = readImageStream(s.bytes, s.name, release, { key });
  const first = await records.next();
  if (first.done || first.value.type !== 'header') {
    await records.return(undefined); // the source closed (its file, its connection)
    throw new CorruptError(`${s.name}: no stream header`);
  }
  return { header: first.value.header, records };
}

export interface RestoreOptions {
  /** Called on an existing volume restored into, once opened; what it returns is called before the volume is closed (ok: the restore succeeded). */
  onExisting?: (vol: Volume) => (ok: boolean) => void;
  /** The catalog's records, read when an unencrypted stream not chosen from the catalog (StreamSource.expected) is met: one the catalog records as encrypted is refused (see chain-encryption.ts). */
  catalog?: () => DumpRecord[];
  /** Told (one line) when that catalog cannot be read: then it holds nothing, as none at all. */
  catalogUnreadable?: (line: string) => void;
}

/** Reads the header of each stream of `src` with `key`: throws what the restore would throw at it (AuthError: a key that does not open it; an unencrypted stream where a key, or the catalog, says encrypted). */
async function checkKeyAhead(src: StreamSource, key: KeyOption, recorded: RecordedEncryption | null): Promise<void> {
  for await (const s of src.streams()) {
    const { header, records } = await firstHeader(s, async () => {}, key);
    await records.return(undefined).catch(() => undefined);
    if (!src.expected) recorded?.refuse(s.name, header, s.position);
  }
}

/**
 * `key`: of encrypted streams (without it they are refused, AuthError, before anything is
 * written). `pick`: chooses among streams whose medium could not tell whose dump they are
 * (restore --volume on a tape of plain dumps); without it they are all taken.
 */
export async function restoreStreams(sources: StreamSource[], volumePath: string, progress: Progress = noProgress, key: KeyOption = null, pick?: VolumePick, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const result: RestoreResult = { volume: volumePath, created: false, streams: [], held: [], blocks: 0, bytes: 0 };
  /** Streams of other volumes passed over (pick), for the error when none was taken. */
  const passed: string[] = [];
  let selector: string | undefined;
  let vol: Volume | null = null;
  // a volume that does not exist yet is built under a temporary name and appears only
  // when every stream is in: a failed or killed restore leaves nothing under VOL
  let tmp: string | null = null;
  let unkeep = (): void => {};
  /** Why the last stream, held, would take the volume back (see restore-held.ts): thrown when no stream after it is held or applied. */
  let refusal: Error | null = null;
  let seen = 0;
  /** The last encrypted stream of the chain so far: an unencrypted one after it could be anyone's. */
  let encryptedBefore: string | null = null;
  /** What opts.onExisting opened on the existing volume: closed before it is (ok: the restore succeeded). */
  let closeExisting: ((ok: boolean) => void) | null = null;
  // a link to nothing would make the whole restore fail at its final link into place
  refuseDanglingLink(volumePath, 'give --to a path that does not exist yet, or remove the link');
  // what can be known wrong about any source is refused before the first stream is applied
  for (const src of sources) await src.precheck?.();
  // a chain read with a key: each stream file's key check passes before the first stream is applied (one needing another key refused later left the streams before it applied)
  const recorded = opts.catalog ? new RecordedEncryption(opts.catalog, opts.catalogUnreadable ?? (() => {})) : null;
  if (key !== null && sources.length > 1) for (const src of sources) if (src.rereadable) await checkKeyAhead(src, key, recorded);
  try {
    for (const src of sources) {
      for await (const s of src.streams()) {
        // block data is written behind, straight from the stream's read buffers: the source
        // reads into one again once the writes from it are done
        let writes: WriteBehind | null = null;
        const { header, records } = await firstHeader(s, (buf) => {
          const after = writes?.written() ?? Promise.resolve();
          s.recycle?.(buf, after);
          return after;
        }, key);
        // a stream refused or passed over below is closed (its file, its connection) when the loop goes on or throws
        try {
          if (src.expected && header.streamId !== src.expected.streamId) {
            throw new NotFoundError(
              `${s.name}: holds dump ${header.streamId.slice(0, 8)} (top snapshot "${header.top.name}"), not dump ${src.expected.streamId.slice(0, 8)} (top snapshot "${src.expected.top}") that the catalog records there: it was overwritten or replaced since`,
              'find the dump on other media, or rebuild the catalog from what the media hold: imgstream catalog rebuild --from SOURCE...',
            );
          }
          if (s.volumeUnchecked !== undefined && pick && !pick.wants(header, s.volumeUnchecked)) {
            selector = s.volumeUnchecked;
            passed.push(`${s.name} (volume ${header.volume.uuid.slice(0, 8)})`);
            continue;
          }
          refuseUnencryptedInPlace(s.name, header, src.expected, encryptedBefore);
          // (a stream the catalog chose, --as-of, is held to its record by refuseUnencryptedInPlace)
          if (!src.expected) recorded?.refuse(s.name, header, s.position);
          if (header.encryption) encryptedBefore = s.name;
          const order = ++seen;
          let held: HeldCandidate | null = null;
          if (!vol) {
            if (!fs.existsSync(volumePath)) {
              ({ tmp, unkeep } = createForStream(volumePath, header, s.name, sources.length > 1));
              vol = Volume.open(tmp, { write: true });
            } else {
              vol = openTarget(volumePath);
              // a restore that created it and was killed between its link into place and
              // the removal of its hidden name left that name: a second name of this file
              const { dir, prefix } = tempBeside(volumePath, 'restoring');
              removeStaleTemp(dir, prefix);
              // and the stage file of a killed incremental, whether this restore applies anything or not
              removeStaleStage(volumePath);
              closeExisting = opts.onExisting?.(vol) ?? null;
              // stopped (Ctrl-C, SIGTERM): nothing of the stream being applied is committed
              const unsay = sayOnStop(`${volumePath} is as its last CP left it`);
              const unkeepBefore = unkeep;
              unkeep = () => {
                unsay();
                unkeepBefore();
              };
              held = checkFits(vol, header, s.name, volumePath);
            }
          } else held = checkFits(vol, header, s.name, volumePath, tmp !== null);
          if (held) {
            // a volume that went on since this stream's top: refused, unless a later stream goes on from the volume
            refusal = held.refusal;
            result.held.push({ ...held.held, order });
            continue;
          }
          refusal = null;
          writes = new WriteBehind(vol.file, { writeback: true, direct: true }); // ends in a CP
          let r: RestoredStream;
          try {
            r = await applyStream(vol, header, records, writes, s.name, volumePath, progress, tmp !== null);
          } finally {
            await writes.close();
          }
          if (s.bytesRead) r.mediaBytesRead = s.bytesRead();
          r.order = order;
          result.streams.push(r);
          result.blocks += r.blocks;
          result.bytes += r.bytes;
        } finally {
          await records.return(undefined).catch(() => undefined);
        }
      }
    }
    if (refusal) throw refusal;
    // every stream held already, and the volume still waits for the one its restore stopped in
    if (vol && tmp === null && vol.restoreUnfinished) throw unfinishedNeedsStream(vol, volumePath, result.held.map((h) => h.stream));
    if (result.streams.length === 0 && selector !== undefined) {
      const uuids = pick!.named(selector);
      throw new NotFoundError(
        `no dump of volume ${selector}${uuids.length ? ` (${uuids.map((u) => u.slice(0, 8)).join(', ')})` : ''} in ${sources.map((x) => x.description).join(', ')}: it holds ${passed.join(', ')}`,
        'give the volume\'s uuid (or 4+ of its first digits), or its path as dumped',
      );
    }
    if (result.streams.length === 0 && result.held.length === 0) throw new NotFoundError('no stream found in the sources given', 'check the --from paths (tape:DIR reads every tape file of DIR)');
    if (tmp) {
      vol!.file.sync();
      vol!.close();
      vol = null;
      try {
        fs.linkSync(tmp, volumePath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ExistsError(`${volumePath}: appeared while restoring`, 'restore again');
        throw err;
      }
      result.created = true;
    }
    closeExisting?.(true);
    closeExisting = null;
  } catch (err) {
    closeExisting?.(false);
    // the volume being built is the user's VOL to them: never name the hidden file
    if (tmp && err instanceof Error) err.message = err.message.split(tmp).join(volumePath);
    throw err;
  } finally {
    vol?.close();
    if (tmp) fs.rmSync(tmp, { force: true });
    unkeep();
  }
  return result;
}
