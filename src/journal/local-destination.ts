// A protection destination in a local directory:
//   DEST/protect.json         what it holds (destination-state.ts)
//   DEST/base.vol             an imgstream volume: the seed plus every folded interval
//   DEST/base.sums            the crc32 of each block of the base's disk (base-sums.ts)
//   DEST/intervals/N.ivl      the intervals of the retained window (interval-file.ts)
// One shipper at a time: open() takes a lock on the directory (volume-lock.ts), released
// by close() or the process's death.
import fs from 'node:fs';
import path from 'node:path';
import { BusyError, CorruptError, ExistsError, FileTooLargeError, InvalidInputError, NotFoundError, fromSystemError } from '../core/errors.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { Volume } from '../volume/volume.js';
import { leastBlocksFor } from '../volume/volume-create.js';
import { writeLogicalBlocks, unmapLogicalBlocks } from '../volume/logical-io.js';
import { removeStaleTemp } from '../fs/stale-temp.js';
import { crashPoint } from '../volume/crash-point.js';
import { DEFAULT_KEEP_MS, type DestinationState, type IntervalBlock, type ProtectDestination, type ProtectedSource, type SeedImage, type ShippedInterval } from './destination-api.js';
import { BASE_FILE, INTERVALS_DIR, STATE_FILE, heldByDestination, initialState, readState, refuseVolumePath, windowOf, writeState, type ProtectState } from './destination-state.js';
import { fsyncDirectory } from '../fs/durable-file.js';
import { foldExpired, wholeDiskWanted, type HeldInterval } from './fold.js';
import { holdsWholeDisk } from './recovery-point.js';
import { intervalSeqOf, readDamagedHeader, readIntervalHeader, writeIntervalFile, intervalFileName } from './interval-file.js';
import { OVERLAY_CP_BLOCKS } from './overlay.js';
import { takeUpScrubFinding } from './scrub-finding.js';
import { BASE_SUMS_FILE, BaseSumsWriter } from './base-sums.js';
import { makeDirectories } from '../core/make-dirs.js';

/** Base volume size in blocks per logical block: room for the snapshots it keeps. */
const BASE_BLOCKS_PER_LOGICAL = 4;
/** Plus room for metadata and CP journals on a small disk. */
const BASE_SPARE_BLOCKS = 4096;
const RUN_BLOCKS = 256;

/** Destinations (real paths) a LocalProtectDestination of this process holds open. */
const openHere = new Set<string>();

export class LocalProtectDestination implements ProtectDestination {
  readonly description: string;
  private lock: VolumeLock | null = null;
  private state: ProtectState | null = null;
  private held: HeldInterval[] = [];
  private key: string | null = null;
  /** The retention before open() changed it (null: unchanged). */
  private keepWas: number | null = null;

  constructor(readonly dir: string) {
    this.description = dir;
  }

  private get ivDir(): string {
    return path.join(this.dir, INTERVALS_DIR);
  }

  private answer(): DestinationState {
    const s = this.state!;
    const damage = s.damage ? { damage: { ...s.damage, wholeDiskWanted: wholeDiskWanted(s, this.held) } } : {};
    return { seeded: s.seeded, intervalSeq: s.intervalSeq, journalTo: s.journalTo, window: windowOf(s), keepMs: s.keepMs, keepWas: this.keepWas, ...damage };
  }

  private opened(): ProtectState {
    if (!this.state) throw new Error('protection destination used before open()');
    return this.state;
  }

  async open(source: ProtectedSource, keepMs: number | null): Promise<DestinationState> {
    if (this.state) return this.answer();
    if (keepMs !== null && !(keepMs >= 0)) throw new InvalidInputError(`invalid retention ${keepMs} ms`);
    refuseVolumePath(this.dir);
    const fresh = !fs.existsSync(path.join(this.dir, STATE_FILE));
    if (fresh) {
      if (source.journalDamage !== undefined) throw refusedForDamage(source.journalDamage, this.dir);
      try {
        makeDirectories(path.dirname(path.resolve(this.dir))); // created on the first transfer, with its parents
        fs.mkdirSync(this.dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, this.dir, 'creating the protection destination');
        const names = fs.readdirSync(this.dir);
        const held = heldByDestination(this.dir);
        if (held) {
          // the state file is gone, the data is not: never start over on top of it
          throw new CorruptError(`${this.dir}: ${STATE_FILE} is missing, but the directory holds a protection destination's ${held}`, `nothing was changed; read what it holds (imgstream volume export ${path.join(this.dir, BASE_FILE)}) or move it away, then protect to a new directory`);
        }
        if (names.some((n) => n !== INTERVALS_DIR && !n.startsWith('.'))) {
          throw new ExistsError(`${this.dir}: a directory that is not a protection destination (it holds other files)`, 'give an empty or new directory');
        }
      }
    }
    // the lock is per process: a second shipper in this process (a daemon's session) is refused here
    const key = fs.realpathSync(this.dir);
    if (openHere.has(key)) throw new BusyError(`${this.dir}: protection destination is in use by another shipper of this process`, 'wait for it to finish, or stop it');
    this.lock = VolumeLock.acquire(this.dir, fs.statSync(this.dir), 'protection destination');
    openHere.add(key);
    this.key = key;
    try {
      let s: ProtectState;
      if (fresh) {
        s = initialState(source, keepMs ?? DEFAULT_KEEP_MS);
        makeDirectories(this.ivDir);
        writeState(this.dir, s);
      } else {
        s = readState(this.dir);
        if (!s.seeded && source.journalDamage !== undefined) throw refusedForDamage(source.journalDamage, this.dir);
        if (s.source.uuid !== source.uuid) {
          throw new InvalidInputError(`${this.dir}: protects volume ${s.source.uuid} (${s.source.path}), not ${source.uuid} (${source.path})`, 'give another destination');
        }
        if (s.source.blockSize !== source.blockSize || s.source.logicalSize !== source.logicalSize) {
          throw new InvalidInputError(`${this.dir}: protects a disk of ${s.source.logicalSize} bytes in ${s.source.blockSize}-byte blocks; ${source.path} has ${source.logicalSize} bytes in ${source.blockSize}-byte blocks`);
        }
        // a journal moved aside and started over (its records number from 1 again), or copied
        // with the volume (its records go on from the same numbers with other writes)
        if (source.journalId !== undefined && s.source.journalId !== undefined && source.journalId !== s.source.journalId && source.journalIdWas !== s.source.journalId) {
          throw new InvalidInputError(
            `${this.dir}: was fed from another write journal of volume ${source.uuid} (${s.source.journalId.slice(0, 8)}, not ${source.journalId.slice(0, 8)}): this journal is not the one the destination was fed from (moved aside and started over, copied with the volume, or moved to another file system)`,
            'nothing was changed; protect to a new destination',
          );
        }
        makeDirectories(this.ivDir);
        // no --keep given: the destination keeps what it was told to keep
        const keep = keepMs ?? s.keepMs;
        if (keep !== s.keepMs) this.keepWas = s.keepMs;
        // a journal that ends before what is held here is refused by its shipper: nothing of this session is recorded
        const refusedNext = s.seeded && source.journalLast !== undefined && source.journalLast < s.journalTo;
        if (!refusedNext && (s.keepMs !== keep || s.source.path !== source.path || (source.journalId !== undefined && s.source.journalId !== source.journalId))) {
          s.keepMs = keep;
          s.source.path = source.path;
          // (a destination fed before journals had an identity, or before it was tied to the journal's directory, takes this one's)
          if (source.journalId !== undefined) s.source.journalId = source.journalId;
          writeState(this.dir, s);
        }
      }
      // only the lock's holder writes here: temporary files are a killed writer's
      for (const n of fs.readdirSync(this.dir)) if (/^protect\.json\.\d+\.tmp$/.test(n)) fs.rmSync(path.join(this.dir, n), { force: true });
      this.state = s;
      this.held = this.loadHeld(s);
      await foldExpired(this.dir, s, this.held);
      await takeUpScrubFinding(this.dir, s, this.held);
      return this.answer();
    } catch (err) {
      this.state = null;
      this.lock.release();
      this.lock = null;
      openHere.delete(key);
      this.key = null;
      throw err;
    }
  }

  /** Removes what an interrupted append or fold left, and reads the held intervals' headers. */
  private loadHeld(s: ProtectState): HeldInterval[] {
    let removed = false;
    for (const n of fs.readdirSync(this.ivDir)) {
      const seq = intervalSeqOf(n);
      if (seq === null ? n.endsWith('.tmp') : seq > s.intervalSeq || seq <= s.baseSeq) {
        fs.rmSync(path.join(this.ivDir, n), { force: true });
        removed = true;
      }
    }
    if (removed) fsyncDirectory(this.ivDir);
    const held: HeldInterval[] = [];
    for (let seq = s.baseSeq + 1; seq <= s.intervalSeq; seq++) {
      const file = path.join(this.ivDir, intervalFileName(seq));
      let h: { end: number; snapshots: string[]; bytes: number; kind: 'journal' | 'resync'; blockCount: number };
      try {
        h = readIntervalHeader(file, { verify: false });
      } catch (err) {
        // a damaged or missing file: listed with the time its header still gives (or the one before), found damaged by the fold that reaches it
        if (!(err instanceof CorruptError) && !(err instanceof NotFoundError)) throw err;
        const d = readDamagedHeader(file);
        h = { end: d?.end ?? held.at(-1)?.end ?? s.baseTime, snapshots: [], bytes: 0, kind: 'journal', blockCount: 0 };
      }
      held.push({ seq, end: h.end, snapshots: h.snapshots, bytes: h.bytes, whole: holdsWholeDisk({ kind: h.kind, blocks: h.blockCount }, s) });
    }
    return held;
  }

  async seed(image: SeedImage): Promise<DestinationState> {
    const s = this.opened();
    if (s.seeded) throw new InvalidInputError(`${this.dir}: already seeded (recovery points up to interval ${s.intervalSeq})`, 'append intervals, or protect to a new destination');
    const { blockSize, logicalSize, uuid } = s.source;
    const logicalBlocks = logicalSize / blockSize;
    const prefix = `.${BASE_FILE}.seeding-`;
    const sumsPrefix = `.${BASE_SUMS_FILE}.seeding-`;
    removeStaleTemp(this.dir, prefix);
    removeStaleTemp(this.dir, sumsPrefix);
    const tmp = path.join(this.dir, `${prefix}${process.pid}`);
    const sumsTmp = path.join(this.dir, `${sumsPrefix}${process.pid}`);
    fs.rmSync(tmp, { force: true });
    try {
      createBase(tmp, this.dir, { size: logicalSize, blockSize, uuid });
      const vol = Volume.open(tmp, { write: true });
      let sums: BaseSumsWriter | null = null;
      try {
        sums = new BaseSumsWriter(sumsTmp, blockSize, logicalBlocks);
        vol.setProtectBase(true); // written by this destination alone from now on
        await writeSeedBlocks(vol, image.blocks, image.blockCount, logicalBlocks, sums);
        vol.commit();
        vol.file.sync();
        sums.finish();
      } finally {
        sums?.close();
        vol.close();
      }
      // the checksums take their name first: a base never goes without them (a crash between leaves them for the next seed to replace)
      fs.renameSync(sumsTmp, path.join(this.dir, BASE_SUMS_FILE));
      fs.renameSync(tmp, path.join(this.dir, BASE_FILE));
      fsyncDirectory(this.dir);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      fs.rmSync(sumsTmp, { force: true });
      throw err;
    }
    Object.assign(s, { seeded: true, baseSeq: 0, baseTime: image.time, intervalSeq: 0, intervalEnd: image.time, journalTo: image.journalTo, fold: null });
    delete s.quietTo;
    writeState(this.dir, s);
    this.held = [];
    return this.answer();
  }

  async append(interval: ShippedInterval): Promise<DestinationState> {
    const s = this.opened();
    if (!s.seeded) throw new InvalidInputError(`${this.dir}: not seeded yet`, 'the first transfer is a seed');
    if (interval.seq !== s.intervalSeq + 1) throw new InvalidInputError(`${this.dir}: interval ${interval.seq} does not follow interval ${s.intervalSeq}`, 'resume from the destination\'s state');
    const newest = windowOf(s)!.end;
    if (!(interval.end >= interval.start) || interval.end < newest) {
      throw new InvalidInputError(`${this.dir}: interval ${interval.seq} ends at ${new Date(interval.end).toISOString()}, before the newest recovery point ${new Date(newest).toISOString()}`);
    }
    if (interval.journalTo < s.journalTo) throw new InvalidInputError(`${this.dir}: interval ${interval.seq} ends at journal record ${interval.journalTo}, before ${s.journalTo}`);
    const bytes = await writeIntervalFile(this.ivDir, interval, { blockSize: s.source.blockSize, logicalBlocks: s.source.logicalSize / s.source.blockSize, source: s.source.uuid });
    crashPoint('protect-interval-written', this.dir);
    s.intervalSeq = interval.seq;
    s.intervalEnd = interval.end;
    s.journalTo = interval.journalTo;
    writeState(this.dir, s);
    this.held.push({ seq: interval.seq, end: interval.end, snapshots: [...interval.snapshots], bytes, whole: holdsWholeDisk({ kind: interval.kind, blocks: interval.blockCount }, s) });
    await foldExpired(this.dir, s, this.held);
    await takeUpScrubFinding(this.dir, s, this.held); // a scrub found damage meanwhile: the answer asks for a full resync
    return this.answer();
  }

  async quiet(until: number): Promise<DestinationState> {
    const s = this.opened();
    if (!s.seeded) throw new InvalidInputError(`${this.dir}: not seeded yet`, 'the first transfer is a seed');
    if (until > windowOf(s)!.end) {
      s.quietTo = until;
      writeState(this.dir, s);
    }
    await takeUpScrubFinding(this.dir, s, this.held);
    return this.answer();
  }

  async close(): Promise<void> {
    this.state = null;
    this.lock?.release();
    this.lock = null;
    if (this.key) openHere.delete(this.key);
    this.key = null;
  }
}

/**
 * Creates the base volume at `tmp`: room for BASE_BLOCKS_PER_LOGICAL times its disk, or,
 * where the file system holds no file that large (ext4: 16 TiB, so a disk over ~4 TiB),
 * the largest it holds: the base then keeps fewer snapshots (the oldest go when room is
 * needed). One that cannot hold the disk once over (its map, a fold's changes before a
 * CP frees what they replace) is refused, naming the limit.
 */
function createBase(tmp: string, dir: string, opts: { size: number; blockSize: number; uuid: string }): void {
  const logicalBlocks = opts.size / opts.blockSize;
  try {
    Volume.create(tmp, { ...opts, nblocks: logicalBlocks * BASE_BLOCKS_PER_LOGICAL + BASE_SPARE_BLOCKS, fit: { leastBlocks: leastBlocksFor(logicalBlocks) + 2 * OVERLAY_CP_BLOCKS } });
  } catch (err) {
    if (!(err instanceof FileTooLargeError)) throw err;
    throw new FileTooLargeError(err.message.replace(`${tmp}: `, `${dir}: `).replace('for a volume of', 'for the base volume of'), 'protect to a directory on a file system that holds larger files (XFS, btrfs; ext4 holds 16 TiB)', err.bytes);
  }
}

/** Writes a seed's blocks (ascending LBN) onto an empty volume, committing as it goes. */
async function writeSeedBlocks(vol: Volume, blocks: AsyncIterable<IntervalBlock>, blockCount: number, logicalBlocks: number, sums: BaseSumsWriter): Promise<void> {
  let run: Buffer[] = [];
  let runFirst = 0;
  let count = 0;
  let last = -1;
  let sinceCp = 0;
  const flush = () => {
    if (run.length) writeLogicalBlocks(vol, runFirst, run);
    sinceCp += run.length;
    run = [];
    if (sinceCp >= OVERLAY_CP_BLOCKS) {
      vol.commit();
      sinceCp = 0;
    }
  };
  for await (const b of blocks) {
    if (!Number.isSafeInteger(b.lbn) || b.lbn <= last || b.lbn >= logicalBlocks) throw new InvalidInputError(`seed: block ${b.lbn} is out of order or outside the disk (${logicalBlocks} blocks)`);
    if (b.data !== null && b.data.length !== vol.blockSize) throw new InvalidInputError(`seed: block ${b.lbn} has ${b.data.length} bytes, not ${vol.blockSize}`);
    if ((b.count ?? 1) !== 1) throw new InvalidInputError(`seed: block ${b.lbn} is a run of ${b.count} blocks (a seed holds blocks one by one)`);
    last = b.lbn;
    count++;
    sums.add(b.lbn, b.data);
    if (b.data === null) {
      flush();
      unmapLogicalBlocks(vol, b.lbn, b.lbn + 1);
      continue;
    }
    if (run.length && (b.lbn !== runFirst + run.length || run.length >= RUN_BLOCKS)) flush();
    if (!run.length) runFirst = b.lbn;
    run.push(Buffer.from(b.data));
  }
  flush();
  if (count !== blockCount) throw new InvalidInputError(`seed: ${count} blocks, but its count says ${blockCount}`);
}

/** A journal whose damage stops every session: a destination not seeded yet is left as it is (or not created). */
function refusedForDamage(damage: string, dir: string): CorruptError {
  return new CorruptError(`${damage}: every transfer would stop at that record, so ${dir} is not seeded from it`, 'nothing was created or changed; move the journal directory aside (serve with --journal starts a new one), then protect again');
}
