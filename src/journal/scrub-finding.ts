// What a scrub (protect status --verify) found, handed to the destination's shipper. The
// scrub takes no lock a shipper needs (it runs from cron next to a running protect), so it
// cannot change protect.json; it leaves its finding in DEST/scrub.json instead (written
// whole or not at all), and the destination, under its lock, takes it up at its next open,
// append or quiet time: it reads the named interval again itself, and when it is damaged
// with no full resync after it, records the damage in protect.json as a fold does. Its
// shipper is then asked for a full resync (event `damaged`), from which the recovery
// points rebuild again. Each finding is taken up once (its id is recorded).
import fs from 'node:fs';
import path from 'node:path';
import { writeFileDurably } from '../fs/durable-file.js';
import { removeStaleTemp } from '../fs/stale-temp.js';
import { BASE_FILE, INTERVALS_DIR, writeState, type ProtectState } from './destination-state.js';
import { damageOf, wholeDiskAfter, wholeDiskWanted, type HeldInterval } from './fold.js';
import { intervalFileName } from './interval-file.js';
import { BusyError } from '../core/errors.js';
import { Volume } from '../volume/volume.js';
import { readLogicalBytes } from '../volume/logical-io.js';
import { claimBase } from './base-claim.js';
import { BaseSums, mismatches } from './base-sums.js';

export const SCRUB_FILE = 'scrub.json';
const FORMAT = 'imgstream-protect-scrub';

export interface ScrubFinding {
  format: typeof FORMAT;
  version: 1;
  /** Unique per scrub: the destination takes each one up once. */
  id: string;
  /** When the scrub ended (ISO). */
  at: string;
  /** The damaged intervals it found, oldest first; the base's data first, when it failed base.sums (seq 0, `base`, some of its bad LBNs). */
  damaged: ScrubDamage[];
}

export interface ScrubDamage {
  seq: number;
  what: string;
  base?: true;
  lbns?: number[];
}

/** Bad LBNs of the base a finding names (the destination reads those again). */
export const MAX_FINDING_LBNS = 64;

/**
 * Leaves a scrub's finding for the destination's shipper. Throws what the file system
 * says when it cannot be written (a destination read-only here): the caller says so.
 */
export function recordScrubFinding(dir: string, damaged: ScrubDamage[]): string {
  const file = path.join(dir, SCRUB_FILE);
  removeStaleTemp(dir, /^scrub\.json\.(\d+)\.tmp$/); // a killed scrub's
  const finding: ScrubFinding = { format: FORMAT, version: 1, id: `${Date.now()}-${process.pid}`, at: new Date().toISOString(), damaged };
  writeFileDurably(file, `${JSON.stringify(finding)}\n`);
  return file;
}

function readScrubFinding(dir: string): ScrubFinding | null {
  let f: ScrubFinding;
  try {
    f = JSON.parse(fs.readFileSync(path.join(dir, SCRUB_FILE), 'utf8')) as ScrubFinding;
  } catch {
    return null; // none, or unreadable: a finding is a hint, the damage itself is read again
  }
  if (f.format !== FORMAT || f.version !== 1 || typeof f.id !== 'string' || !Array.isArray(f.damaged)) return null;
  return f;
}

/**
 * Takes up a scrub's finding not taken up yet (the destination's lock held): the first
 * interval it names that is still held, still damaged and has no full resync after it
 * becomes the destination's recorded damage, unless a full resync is already asked for.
 * Returns true when it changed the state (written).
 */
export async function takeUpScrubFinding(dir: string, state: ProtectState, held: HeldInterval[]): Promise<boolean> {
  const f = readScrubFinding(dir);
  if (f === null || f.id === state.scrubTakenUp || !state.seeded) return false;
  if (!wholeDiskWanted(state, held)) {
    const base = f.damaged.find((d) => d.base === true);
    if (base && wholeDiskAfter(held, state.baseSeq) === null) {
      const bad = baseStillBad(dir, state, base.lbns ?? []);
      if (bad === null) return false; // a restore reads the base now: taken up at a later transfer
      if (bad.length) {
        state.damage = { seq: state.baseSeq, what: base.what, base: true };
        state.scrubTakenUp = f.id;
        writeState(dir, state);
        return true;
      }
    }
    for (const d of [...f.damaged].filter((x) => x.base !== true).sort((a, b) => a.seq - b.seq)) {
      if (!Number.isSafeInteger(d.seq) || d.seq <= state.baseSeq || d.seq > state.intervalSeq || (state.fold && d.seq <= state.fold.to)) continue;
      if (wholeDiskAfter(held, d.seq) !== null) continue; // the points after it rebuild from that resync
      const file = path.join(dir, INTERVALS_DIR, intervalFileName(d.seq));
      const damage = await damageOf(file, state.source.blockSize);
      if (damage === null) continue;
      state.damage = { seq: d.seq, what: damage.message.startsWith(`${file}: `) ? damage.message.slice(file.length + 2) : damage.message };
      break;
    }
  }
  state.scrubTakenUp = f.id;
  writeState(dir, state);
  return true;
}

/**
 * The LBNs of `lbns` whose base blocks still fail base.sums, read again here (the finding
 * is a hint); null when that cannot be told now (a restore holds the base, a fold is
 * unfinished): the finding is taken up at a later transfer.
 */
function baseStillBad(dir: string, state: ProtectState, lbns: number[]): number[] | null {
  // a fold cut short: its next step rewrites blocks whose checksums lag behind them
  if (state.fold) return null;
  let release: () => void;
  try {
    release = claimBase(path.join(dir, BASE_FILE));
  } catch (err) {
    if (err instanceof BusyError) return null;
    throw err;
  }
  try {
    const base = Volume.open(path.join(dir, BASE_FILE), { write: false });
    const sums = BaseSums.open(dir, { write: false, blockSize: base.blockSize, logicalBlocks: base.logicalBlocks });
    try {
      if (sums === null) return [];
      const map = base.mapOf();
      const buf = Buffer.allocUnsafe(base.blockSize);
      return lbns.filter((lbn) => {
        if (!Number.isSafeInteger(lbn) || lbn < 0 || lbn >= base.logicalBlocks) return false;
        readLogicalBytes(base, map, lbn * base.blockSize, buf);
        return mismatches(sums, lbn, buf).length > 0;
      });
    } finally {
      sums?.close();
      base.close();
    }
  } catch (err) {
    if (err instanceof BusyError) return null;
    throw err;
  } finally {
    release();
  }
}
