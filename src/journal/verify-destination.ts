// protect status --verify: reads everything a protection destination holds and checks it,
// as a scrub does. Status alone reads interval headers (a few hundred bytes each); damage
// inside an interval's data then shows only when a restore reads that block. Verifying
// reads every interval's index (its checksum) and every block of data in it (each has its
// own checksum), and checks the base volume's structure (root records, maps and planes)
// and every block of its disk against base.sums (base-sums.ts), opened as a restore opens
// it (a fold in progress is waited for). A shipper may append and fold meanwhile: an
// interval folded away before it was read is counted as folded, not as damage.
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, ImgstreamError, NotFoundError } from '../core/errors.js';
import { checkVolumeOffThread } from '../volume/check.js';
import { BASE_FILE, INTERVALS_DIR, readState } from './destination-state.js';
import { checkIntervalData, intervalFileName, readIntervalIndex } from './interval-file.js';
import { openBase } from './restore-as-of.js';
import { holdsWholeDisk } from './recovery-point.js';
import { recordScrubFinding, MAX_FINDING_LBNS } from './scrub-finding.js';
import { BASE_SUMS_FILE, BaseSums, baseDamageWhat, mismatches, zeroMismatches } from './base-sums.js';
import { noneMapped } from '../volume/logical-map.js';
import { readLogicalBytes } from '../volume/logical-io.js';
import type { Volume } from '../volume/volume.js';
import type { ProtectState } from './destination-state.js';

const iso = (ms: number) => new Date(ms).toISOString();

/** Bytes of an interval's data read at once (its blocks lie one after another); the event loop turns between two reads. */
const RUN_BYTES = 1 << 20;
/** Entries of base.sums checked at once where the base maps nothing (1 MiB of them). */
const ZERO_SPAN = 1 << 18;

/** What verifying found. */
export interface DestinationVerification {
  /** Interval files read whole and found intact. */
  intervals: number;
  /** Blocks of data read and checked in those intact intervals. */
  blocks: number;
  /** Bytes read from them. */
  bytes: number;
  /** Intervals a fold took into the base while they were being read (not checked, not damage). */
  folded: number;
  /**
   * The base volume's check: ok, or its problems; `dataBlocks`: blocks of its disk read and
   * checked against base.sums (`dataUnchecked`: why not), `badBlocks` those that failed.
   */
  base: { ok: boolean; problems: string[]; dataBlocks: number; badBlocks: number[]; dataUnchecked?: string };
  /** One line per damaged file: which, and what (the first bad block of an interval). */
  damaged: string[];
  /**
   * The first damaged interval (0: the base), or null when none is. Every recovery point
   * from it on needs it; when it is the base or an interval a fold under way still has to
   * apply, no recovery point can be rebuilt.
   */
  firstDamagedSeq: number | null;
  /**
   * With damage: the recovery points that cannot be rebuilt, as runs: those after `after`
   * (ISO time; null: every one from the start) and before `before` (the end of an intact
   * full resync that holds the whole disk again; null: to the window's end).
   */
  lost: Array<{ after: string | null; before: string | null }>;
  /** With damage: the newest recovery point that can still be rebuilt (ISO time), or null when none can. */
  rebuildableTo: string | null;
  /** The damaged intervals (seq, what is wrong), oldest first. */
  damagedIntervals: Array<{ seq: number; what: string }>;
  /**
   * Set when a damaged interval has no intact full resync after it: where the finding was
   * left for the destination's shipper (scrub-finding.ts), which then sends one; or why it
   * could not be (`notRecorded`).
   */
  resync?: { recorded: string } | { notRecorded: string };
}

/** Reads and checks every interval and the base of the destination DIR. */
export async function verifyDestination(dir: string): Promise<DestinationVerification> {
  const s = readState(dir);
  const out: DestinationVerification = { intervals: 0, blocks: 0, bytes: 0, folded: 0, base: { ok: true, problems: [], dataBlocks: 0, badBlocks: [] }, damaged: [], lost: [], firstDamagedSeq: null, rebuildableTo: null, damagedIntervals: [] };
  if (!s.seeded) return out;
  const base = await checkBase(dir);
  out.base = { ok: base.ok, problems: base.problems, dataBlocks: base.dataBlocks, badBlocks: base.badBlocks, ...(base.dataUnchecked ? { dataUnchecked: base.dataUnchecked } : {}) };
  if (!out.base.ok) out.firstDamagedSeq = 0;
  // every interval not in the base yet: those a fold under way still has to apply too (it
  // reads them; the window no longer shows them)
  const first = s.fold?.applied ?? s.baseSeq;
  let lastGood: number | null = out.base.ok && !s.fold ? s.baseTime : null;
  /** True while the points so far cannot be rebuilt (damage before them, and no whole disk since). */
  let broken = !out.base.ok;
  // runs of up to 1 MiB (whole blocks) are read at once
  const buf = Buffer.allocUnsafe(Math.max(1, Math.floor(RUN_BYTES / s.source.blockSize)) * s.source.blockSize);
  for (let seq = first + 1; seq <= s.intervalSeq; seq++) {
    const file = path.join(dir, INTERVALS_DIR, intervalFileName(seq));
    try {
      const ix = readIntervalIndex(file);
      const fd = fs.openSync(file, 'r');
      let blocks = 0;
      try {
        // a daemon verifying for a client goes on serving its other sessions (shippers) between runs
        blocks = await checkIntervalData(fd, ix, s.source.blockSize, buf, () => new Promise<void>((resolve) => setImmediate(resolve)));
      } finally {
        fs.closeSync(fd);
      }
      out.intervals++;
      out.blocks += blocks;
      out.bytes += ix.bytes;
      // a point is rebuildable when the base and every interval up to it are intact (and the
      // fold, if any, is past), or every interval from an intact one holding the whole disk on
      if (broken && out.base.ok && holdsWholeDisk({ kind: ix.header.kind, blocks: ix.header.blockCount }, s)) {
        broken = false;
        out.lost.push({ after: lastGood === null ? null : iso(lastGood), before: iso(ix.header.end) });
      }
      if (!broken && (!s.fold || seq >= s.fold.to)) lastGood = ix.header.end;
    } catch (err) {
      if (foldedAway(dir, seq)) {
        out.folded++;
        continue;
      }
      if (err instanceof CorruptError) out.damaged.push(err.message);
      else if ((err as NodeJS.ErrnoException).code === 'ENOENT' || err instanceof NotFoundError) out.damaged.push(`${file}: missing interval file (interval ${seq} of ${s.intervalSeq})`);
      else throw err;
      const what = out.damaged.at(-1)!;
      out.damagedIntervals.push({ seq, what: what.startsWith(`${file}: `) ? what.slice(file.length + 2) : what });
      out.firstDamagedSeq ??= seq;
      broken = true;
    }
  }
  if (broken && out.firstDamagedSeq !== null) out.lost.push({ after: lastGood === null ? null : iso(lastGood), before: null });
  // damage no full resync has passed over yet: the destination's shipper is to send one (it takes no lock here to tell it otherwise)
  const baseData = out.base.badBlocks.length > 0 ? [{ seq: 0, what: out.base.problems[0], base: true as const, lbns: out.base.badBlocks.slice(0, MAX_FINDING_LBNS) }] : [];
  if (broken && out.damagedIntervals.length + baseData.length > 0) {
    try {
      out.resync = { recorded: recordScrubFinding(dir, [...baseData, ...out.damagedIntervals]) };
    } catch (err) {
      out.resync = { notRecorded: (err as Error).message };
    }
  }
  if (out.firstDamagedSeq !== null) out.rebuildableTo = lastGood === null ? null : new Date(lastGood).toISOString();
  if (!out.base.ok) out.damaged.unshift(base.unopened ? out.base.problems[0] : `${path.join(dir, BASE_FILE)}: the base volume's check found ${out.base.problems.length} problem${out.base.problems.length === 1 ? '' : 's'}: ${out.base.problems[0]}`);
  return out;
}

/** True when interval `seq` is in the base now (a fold took it while it was read). */
function foldedAway(dir: string, seq: number): boolean {
  try {
    const now = readState(dir);
    return seq <= (now.fold ? now.fold.to : now.baseSeq) && !fs.existsSync(path.join(dir, INTERVALS_DIR, intervalFileName(seq)));
  } catch {
    return false;
  }
}

interface BaseFindings {
  ok: boolean;
  problems: string[];
  unopened?: boolean;
  dataBlocks: number;
  badBlocks: number[];
  dataUnchecked?: string;
}

async function checkBase(dir: string): Promise<BaseFindings> {
  let opened: Awaited<ReturnType<typeof openBase>>;
  try {
    opened = await openBase(dir);
  } catch (err) {
    // a base that is missing or does not open: the error says what and where
    if (err instanceof ImgstreamError && err.code !== 'busy') return { ok: false, problems: [err.message], unopened: true, dataBlocks: 0, badBlocks: [], dataUnchecked: 'the base did not open' };
    throw err;
  }
  try {
    // on a worker thread: a daemon scrubbing for a client goes on serving its shippers meanwhile
    const r = await checkVolumeOffThread(opened.base.path);
    const problems = [...r.problems, ...r.trees.flatMap((t) => t.problems.map((p) => `${t.name}: ${p}`))];
    // its data against base.sums, the fold waiting (the base is claimed) and none under way (read under the claim)
    const data = problems.length === 0 ? await checkBaseData(dir, opened.base, readState(dir)) : { dataBlocks: 0, badBlocks: [], dataUnchecked: 'its structure is damaged' };
    if (data.badBlocks.length) problems.push(baseDamageWhat(data.badBlocks));
    return { ok: problems.length === 0, problems, ...data };
  } finally {
    opened.base.close();
    opened.release();
  }
}

/** Reads the base's disk and checks every block against base.sums (the event loop turns between chunks). */
async function checkBaseData(dir: string, base: Volume, s: ProtectState): Promise<Pick<BaseFindings, 'dataBlocks' | 'badBlocks' | 'dataUnchecked'>> {
  if (s.fold) return { dataBlocks: 0, badBlocks: [], dataUnchecked: `a fold is under way (up to interval ${s.fold.to}): its next step rewrites blocks the checksums do not show yet` };
  let sums: BaseSums | null;
  try {
    sums = BaseSums.open(dir, { write: false, blockSize: base.blockSize, logicalBlocks: base.logicalBlocks });
  } catch (err) {
    if (err instanceof CorruptError) return { dataBlocks: 0, badBlocks: [], dataUnchecked: err.message };
    throw err;
  }
  if (sums === null) return { dataBlocks: 0, badBlocks: [], dataUnchecked: `the destination keeps no ${BASE_SUMS_FILE} (seeded by an older imgstream)` };
  try {
    const bs = base.blockSize;
    const per = Math.max(1, Math.floor(RUN_BYTES / bs));
    const buf = Buffer.allocUnsafe(per * bs);
    const map = base.mapOf();
    const bad: number[] = [];
    for (let lbn = 0; lbn < base.logicalBlocks; ) {
      // a stretch the base leaves unmapped: zeros, whose checksums are known without reading
      // them, checked ZERO_SPAN at once (a 1 TiB disk holding little is a thousand such)
      const span = Math.min(ZERO_SPAN, base.logicalBlocks - lbn);
      if (span > per && noneMapped(map, lbn, lbn + span)) {
        bad.push(...zeroMismatches(bs, lbn, sums.read(lbn, span)));
        lbn += span;
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      const n = Math.min(per, base.logicalBlocks - lbn);
      if (noneMapped(map, lbn, lbn + n)) {
        bad.push(...zeroMismatches(bs, lbn, sums.read(lbn, n)));
      } else {
        const chunk = buf.subarray(0, n * bs);
        readLogicalBytes(base, map, lbn * bs, chunk);
        bad.push(...mismatches(sums, lbn, chunk));
      }
      lbn += n;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return { dataBlocks: base.logicalBlocks, badBlocks: bad };
  } finally {
    sums.close();
  }
}
