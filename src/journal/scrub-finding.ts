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
import { INTERVALS_DIR, writeState, type ProtectState } from './destination-state.js';
import { damageOf, wholeDiskAfter, wholeDiskWanted, type HeldInterval } from './fold.js';
import { intervalFileName } from './interval-file.js';

export const SCRUB_FILE = 'scrub.json';
const FORMAT = 'imgstream-protect-scrub';

export interface ScrubFinding {
  format: typeof FORMAT;
  version: 1;
  /** Unique per scrub: the destination takes each one up once. */
  id: string;
  /** When the scrub ended (ISO). */
  at: string;
  /** The damaged intervals it found, oldest first. */
  damaged: Array<{ seq: number; what: string }>;
}

/**
 * Leaves a scrub's finding for the destination's shipper. Throws what the file system
 * says when it cannot be written (a destination read-only here): the caller says so.
 */
export function recordScrubFinding(dir: string, damaged: Array<{ seq: number; what: string }>): string {
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
    for (const d of [...f.damaged].sort((a, b) => a.seq - b.seq)) {
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
