// restore --as-of: which dump a snapshot name or a date means, and which volume's dumps to
// look at. Dates are read strictly (Date.parse takes "june7" for 2001-06-07): a day alone
// means the end of that day, a time without a zone is local time.
import path from 'node:path';
import { NotFoundError, UsageError } from '../core/errors.js';
import type { DumpRecord } from './catalog.js';

/** The accepted --as-of date forms, for help texts and errors. */
export const AS_OF_DATE_FORMS = 'YYYY-MM-DD for the end of that day or YYYY-MM-DDTHH:MM[:SS], in local time, or followed by Z or +HH:MM for another zone';

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * The moment an --as-of date names, in ms since the epoch, or null when the text is not
 * one of AS_OF_DATE_FORMS. A day alone is its last millisecond: "2026-12-04" includes the
 * dumps taken that day.
 */
export function parseAsOfDate(text: string): number | null {
  const m = DATE_RE.exec(text.trim());
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const dayOnly = h === undefined;
  const fields = [Number(y), Number(mo) - 1, Number(d), dayOnly ? 23 : Number(h), dayOnly ? 59 : Number(mi), dayOnly ? 59 : Number(s ?? 0), dayOnly ? 999 : Number((frac ?? '0').padEnd(3, '0').slice(0, 3))] as const;
  if (fields[1] > 11 || fields[2] < 1 || fields[2] > 31 || fields[3] > 23 || fields[4] > 59 || fields[5] > 59) return null;
  let when: number;
  if (zone === undefined) {
    const local = new Date(...fields);
    if (local.getDate() !== fields[2]) return null; // 2026-02-30
    when = local.getTime();
  } else {
    when = Date.UTC(...fields);
    if (new Date(when).getUTCDate() !== fields[2]) return null;
    if (zone !== 'Z') {
      const sign = zone[0] === '-' ? -1 : 1;
      const digits = zone.slice(1).replace(':', '');
      const [zh, zm] = [Number(digits.slice(0, 2)), Number(digits.slice(2))];
      if (zh > 14 || zm > 59) return null; // offsets run from -12:00 to +14:00
      when -= sign * (zh * 60 + zm) * 60_000;
    }
  }
  return when;
}

/** One catalog volume, as --volume and the ambiguity errors name it. */
function volumeLabel(d: DumpRecord): string {
  return `${d.volume.uuid.slice(0, 8)}${d.volume.path ? ` (${d.volume.path})` : ''}`;
}

/**
 * The dump that `asOf` names among `dumps` (already narrowed to one volume when the caller
 * knows it): the newest dump whose top is that snapshot, else the one taken by that date
 * that holds the newest state (the highest top snapshot id; of equals, the newest run). Refused when the answer depends on a volume the user has not named.
 */
export function targetAsOf(dumps: DumpRecord[], asOf: string): DumpRecord {
  // the newest state, not the newest run: a dump of an older snapshot run again (a copy for
  // offsite) is no newer than the level 1 before it. Snapshot ids only grow on a volume (one
  // volume here: see ambiguous), so the highest top id is the newest state; then the newest run
  const newest = (ds: DumpRecord[]) => [...ds].sort((a, b) => a.top.id - b.top.id || a.date.localeCompare(b.date)).at(-1);
  const ambiguous = (ds: DumpRecord[], what: string): void => {
    const vols = new Map(ds.map((d) => [d.volume.uuid, d]));
    if (vols.size > 1) throw new UsageError(`${what} matches dumps of ${vols.size} volumes: ${[...vols.values()].map(volumeLabel).join(', ')}`, 'name one with --volume PATH|UUID, or restore onto an existing volume of the one you mean');
  };
  const { matching, what } = matchingAsOf(dumps, asOf);
  ambiguous(matching, what);
  return newest(matching)!;
}

/**
 * The dumps among `dumps` that `asOf` matches: those whose top is that snapshot, else those
 * taken by that date; `what` names it for errors. Refused when none does.
 */
export function matchingAsOf(dumps: DumpRecord[], asOf: string): { matching: DumpRecord[]; what: string } {
  const byTop = dumps.filter((d) => d.top.name === asOf);
  if (byTop.length) return { matching: byTop, what: `snapshot "${asOf}"` };
  const when = parseAsOfDate(asOf);
  if (when === null) throw new NotFoundError(`no dump in the catalog has top snapshot "${asOf}", and it is not a date`, `give a snapshot name from: imgstream catalog list, or a date: ${AS_OF_DATE_FORMS}`);
  const by = dumps.filter((d) => Date.parse(d.date) <= when);
  if (by.length === 0) throw new NotFoundError(`no dump in the catalog was taken by ${asOf} (${new Date(when).toISOString()})`);
  return { matching: by, what: `date ${asOf}` };
}

/** Dumps of the volume `selector` names: a uuid (or a prefix of at least 4 characters), or a path: the volume there now (`uuidAtPath`) when it has dumps, else the path recorded at dump time. */
export function dumpsOfVolume(dumps: DumpRecord[], selector: string, uuidAtPath?: string): DumpRecord[] {
  const abs = path.resolve(selector);
  // a path that holds a volume now names that volume: the dumps of another one that once had
  // the path (a volume deleted and made again there) are not asked about (its uuid names it)
  const atPath = uuidAtPath === undefined ? [] : dumps.filter((d) => d.volume.uuid === uuidAtPath);
  const mine = atPath.length > 0 ? atPath : dumps.filter((d) => d.volume.path === selector || d.volume.path === abs || (selector.length >= 4 && d.volume.uuid.startsWith(selector)));
  const uuids = new Set(mine.map((d) => d.volume.uuid));
  if (uuids.size === 0) throw new NotFoundError(`the catalog has no dumps of volume "${selector}"`, 'list them with: imgstream catalog list');
  if (uuids.size > 1) {
    const vols = new Map(mine.map((d) => [d.volume.uuid, d]));
    throw new UsageError(`--volume ${selector} matches ${uuids.size} volumes: ${[...vols.values()].map(volumeLabel).join(', ')}`, 'give more of the uuid, or the path as catalog list shows it');
  }
  return mine;
}

/**
 * The chain of dumps that restores a volume as of a snapshot name or a date: the dump
 * whose top is that snapshot (or the newest state taken by that date: see targetAsOf;
 * refused when `dumps` hold several volumes that match), then its base dump,
 * and so on down to a level 0. Returned level 0 first. Where several dumps carry the same
 * snapshot (a dump run again, or another level of it), the newest one whose medium is
 * `available` is taken: a copy deleted or moved away, or one that went through a pipe,
 * does not hide another that holds the same state. Onto an existing volume (`holds`: its
 * snapshots), a chain that goes on from one it holds is taken before another of the same
 * state (a level 0 taken after the incremental of the same snapshot, for offsite, does
 * not go onto it).
 */
export function chainFor(dumps: DumpRecord[], asOf: string, available: (d: DumpRecord) => boolean = () => true, preferred: (d: DumpRecord) => boolean = () => false, holds?: (d: DumpRecord) => boolean): DumpRecord[] {
  // among dumps of the same state: an available one, the preferred ones first (a copy's own dumps), the newest first
  const choose = (candidates: DumpRecord[]): DumpRecord | undefined => {
    const order = [...candidates].sort((a, b) => Number(preferred(b)) - Number(preferred(a)) || b.date.localeCompare(a.date));
    return order.find(available) ?? order[0];
  };
  const target = targetAsOf(dumps, asOf);
  // a date chooses the state, not the dumps: a dump of that state taken after the date (a
  // level 0 for offsite) holds the same blocks, so it may be read, and its bases' too.
  // Any dump of the target's state will do, whatever its level: a level 0 to a pipe does not
  // hide the level 1 of the same snapshot on a tape
  const same = dumps.filter((d) => d.volume.uuid === target.volume.uuid && d.top.id === target.top.id && d.top.name === target.top.name);
  if (holds !== undefined) {
    const order = [...same].sort((a, b) => Number(available(b)) - Number(available(a)) || Number(preferred(b)) - Number(preferred(a)) || b.date.localeCompare(a.date));
    for (const first of order) {
      try {
        const chain = chainFrom(first, dumps, choose, available);
        if (chain.some(holds)) return chain;
      } catch {
        // a base the catalog lacks: another candidate, or the error below
      }
    }
  }
  return chainFrom(choose(same)!, dumps, choose, available);
}

/** `first` and its base dumps down to a level 0 (level 0 first), each picked by `choose` among the dumps of its state. */
function chainFrom(first: DumpRecord, dumps: DumpRecord[], choose: (candidates: DumpRecord[]) => DumpRecord | undefined, available: (d: DumpRecord) => boolean): DumpRecord[] {
  const chain: DumpRecord[] = [first];
  while (chain[0].base) {
    const base = chain[0].base;
    // the base by identity where both records have it: a replica's dump of a snapshot with the same id is another one
    const ofBase = dumps.filter((d) => d.volume.uuid === chain[0].volume.uuid && d.top.id === base.id && (base.generation === undefined || d.top.generation === undefined || d.top.generation === base.generation) && (base.createdMs === undefined || d.top.createdMs === undefined || d.top.createdMs === base.createdMs));
    // the base dump a level N was taken over is one of a lower level; when none of those is
    // available, any dump of that state brings it as well (a level 1 of it, over an older
    // level 0): the stream after it only needs the state
    const lower = ofBase.filter((d) => d.level < chain[0].level);
    const prev = lower.some(available) ? choose(lower) : ofBase.some(available) ? choose(ofBase.filter(available)) : (choose(lower) ?? choose(ofBase));
    if (!prev) throw new NotFoundError(`the catalog has no dump with top snapshot "${base.name}", the base of ${chain[0].top.name}`, 'rebuild the catalog from the media: imgstream catalog rebuild');
    chain.unshift(prev);
  }
  return chain;
}
