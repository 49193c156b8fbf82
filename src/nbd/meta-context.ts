// Metadata contexts a client may select for NBD_CMD_BLOCK_STATUS, answered from the
// volume's metadata only (the logical map and the planes), never by reading data:
//
//   base:allocation         the protocol's own: an unmapped block is a hole that reads
//                           as zeros (STATE_HOLE | STATE_ZERO), a mapped one is data (0).
//   imgstream:image:EXPR    a storage image (DESIGN.md) seen by a client that addresses
//                           logical blocks: a logical block is in the image when the VBN
//                           it is mapped to (in the export's map) is; status 1. A block
//                           mapped outside the image is 0. An unmapped block is 2 (it
//                           holds no VBN and reads as zeros; after `active - S` it may be
//                           one S held, so an incremental copy zeroes it).
//
// The image is evaluated when the context is selected (SET_META_CONTEXT), in one pass
// over the planes, and kept as the chunks of its bitmap that hold any block. It is
// evaluated again before a request that finds the volume changed since (blocks allocated
// or released, snapshots taken, deleted or renamed): the map is always the current one,
// and a block written after the evaluation sits on a VBN the old picture never saw (it
// would read 0, "unchanged", to an incremental copy over a long-lived connection).
// The snapshots the expression names are held by identity (id, and the CP and time that
// took them) from the selection on: when one is deleted, or its name now belongs to
// another snapshot (deleted and taken again), the request fails rather than answer
// against the new one, which would show blocks changed since the old one as unchanged.
import { InvalidInputError, NotFoundError } from '../core/errors.js';
import {
  STATE_HOLE,
  STATE_ZERO,
} from '../format/nbd-protocol.js';
import {
  type BlockStatusExtent,
} from '../format/nbd-transmission.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { imageChunks, parseExpression, resolveExpression, type ResolvedExpression } from '../image/index.js';
import type { LogicalMap } from '../volume/logical-map.js';
import type { Volume } from '../volume/volume.js';

export const BASE_ALLOCATION = 'base:allocation';
export const IMAGE_PREFIX = 'imgstream:image:';
/** Status of a logical block in an imgstream:image context. */
export const IMAGE_IN = 1;
export const IMAGE_UNMAPPED = 2;
/** Descriptors in one BLOCK_STATUS chunk at most (proto.md: SHOULD NOT send more than 2^20). */
export const MAX_EXTENTS = 1 << 16;
/** Snapshots offered as ready-made `active - S` contexts by LIST_META_CONTEXT. */
const LISTED_SNAPSHOTS = 32;

/** A selected context: its name, and the status of each mapped block (unmapped blocks are holes). */
export interface MetaContext {
  readonly name: string;
  /** The status of a block mapped to `vbn`. */
  mapped(vbn: number): number;
  /** The status of an unmapped block. */
  readonly unmapped: number;
  /** Called before each request: brings the context up to the volume as it is now. */
  refresh?(): void;
}

const baseAllocation: MetaContext = { name: BASE_ALLOCATION, mapped: () => 0, unmapped: STATE_HOLE | STATE_ZERO };

/** A query that fails to name a context it could be: the message tells the client why. */
export class MetaContextError extends InvalidInputError {}

/**
 * The contexts LIST_META_CONTEXT answers for `queries` (none: all of them). Names that
 * match nothing are left out; an imgstream:image expression that does not evaluate
 * throws MetaContextError.
 */
export function listContexts(vol: Volume, exportSnapshot: string | null, queries: string[]): string[] {
  const all = [BASE_ALLOCATION, ...suggestedImages(vol, exportSnapshot)];
  if (queries.length === 0) return all;
  const out = new Set<string>();
  for (const q of queries) {
    if (q === 'base:' || q === BASE_ALLOCATION) out.add(BASE_ALLOCATION);
    else if (q === 'imgstream:' || q === IMAGE_PREFIX) for (const n of all.slice(1)) out.add(n);
    else if (q.startsWith(IMAGE_PREFIX)) {
      checkExpression(vol, q.slice(IMAGE_PREFIX.length));
      out.add(q);
    }
  }
  return [...out];
}

/**
 * The contexts SET_META_CONTEXT selects for `queries`, each evaluated now. Queries in
 * other namespaces are ignored, as the protocol asks; a bad image expression throws
 * MetaContextError.
 */
export function selectContexts(vol: Volume, queries: string[]): MetaContext[] {
  const out: MetaContext[] = [];
  const seen = new Set<string>();
  for (const q of queries) {
    if (seen.has(q)) continue;
    seen.add(q);
    if (q === BASE_ALLOCATION) out.push(baseAllocation);
    else if (q.startsWith(IMAGE_PREFIX)) out.push(imageContext(vol, q));
  }
  return out;
}

function checkExpression(vol: Volume, expression: string): void {
  try {
    resolveExpression(parseExpression(expression), vol.planeSource());
  } catch (err) {
    if (err instanceof InvalidInputError || err instanceof NotFoundError) throw new MetaContextError(`${IMAGE_PREFIX}${expression}: ${err.message}`, err.hint);
    throw err;
  }
}

function imageContext(vol: Volume, name: string): MetaContext {
  const expression = name.slice(IMAGE_PREFIX.length);
  checkExpression(vol, expression);
  let chunks = new Map<number, Uint32Array>();
  let vbnsPerChunk = 0;
  let evaluatedAt = '';
  let held: Map<string, SnapshotIdentity> | null = null; // set by the evaluation at selection
  const evaluate = (): void => {
    const source = vol.planeSource();
    const resolved = resolveExpression(parseExpression(expression), source);
    const named = namedSnapshots(vol, resolved);
    if (held === null) held = named;
    else checkHeld(held, named);
    chunks = new Map();
    for (const { chunk, words } of imageChunks(resolved, source)) chunks.set(chunk, words.slice());
    vbnsPerChunk = source.wordsPerChunk * 32;
    evaluatedAt = stateOf(vol);
  };
  evaluate();
  return {
    name,
    unmapped: IMAGE_UNMAPPED,
    refresh() {
      if (stateOf(vol) === evaluatedAt) return;
      try {
        evaluate();
      } catch (err) {
        if (err instanceof InvalidInputError || err instanceof NotFoundError) throw new MetaContextError(`${name} no longer evaluates: ${err.message}`, err.hint);
        throw err;
      }
    },
    mapped(vbn) {
      const words = chunks.get(Math.floor(vbn / vbnsPerChunk));
      if (!words) return 0;
      const bit = vbn % vbnsPerChunk;
      return (words[bit >>> 5] >>> (bit & 31)) & 1 ? IMAGE_IN : 0;
    },
  };
}

/** What an image depends on besides the map: the plane bits and the snapshots. */
function stateOf(vol: Volume): string {
  return `${vol.planeBitEdits}|${vol.snapshots().map((s) => `${s.slot}:${s.id}:${s.generation}:${s.createdMs}:${s.name}:${s.shadow ? 1 : 0}`).join(',')}`;
}

/** What tells a snapshot from another taken under the same name (ids are never reused, but a restore brings its source's). */
type SnapshotIdentity = Pick<SnapshotEntry, 'id' | 'generation' | 'createdMs'>;

/** The snapshots an expression's snapshot planes are now, by name. */
function namedSnapshots(vol: Volume, e: ResolvedExpression, out = new Map<string, SnapshotIdentity>()): Map<string, SnapshotIdentity> {
  if (e.kind === 'plane') {
    if (e.ref.snapshot && !out.has(e.name)) {
      const s = vol.snapshot(e.name);
      out.set(e.name, { id: s.id, generation: s.generation, createdMs: s.createdMs });
    }
  } else {
    namedSnapshots(vol, e.left, out);
    namedSnapshots(vol, e.right, out);
  }
  return out;
}

/** Throws unless each name is still the snapshot it was at selection (a snapshot renamed and renamed back is). */
function checkHeld(held: Map<string, SnapshotIdentity>, now: Map<string, SnapshotIdentity>): void {
  for (const [name, was] of held) {
    const is = now.get(name);
    if (!is || (is.id === was.id && is.generation === was.generation && is.createdMs === was.createdMs)) continue;
    throw new NotFoundError(
      `"${name}" now names another snapshot than the one the context was selected with (id ${is.id}, taken ${new Date(is.createdMs).toISOString()}; the context's, id ${was.id}, was deleted or renamed since)`,
      'select the context again (on a new connection) for the image against the new snapshot, and start the incremental copy from a copy of that one',
    );
  }
}

/** Ready-made images to list: what changed since each of the newest snapshots. */
function suggestedImages(vol: Volume, exportSnapshot: string | null): string[] {
  const top = exportSnapshot ?? 'active';
  const snaps = vol.snapshots().filter((s) => !s.shadow);
  const upTo = exportSnapshot === null ? snaps : snaps.slice(0, Math.max(0, snaps.findIndex((s) => s.name === exportSnapshot)));
  return [`${IMAGE_PREFIX}${top}`, ...upTo.slice(-LISTED_SNAPSHOTS).map((s) => `${IMAGE_PREFIX}${top} - ${s.name}`)];
}

/**
 * The extents of the logical bytes [offset, offset + length) in one context, in order,
 * merging neighbours of the same status, at most `maxExtents` of them (they may then
 * cover less than asked: the protocol allows it). Reads map nodes only; unmapped
 * subtrees cost nothing.
 */
export function blockStatus(map: LogicalMap, blockSize: number, ctx: MetaContext, offset: number, length: number, maxExtents = MAX_EXTENTS): BlockStatusExtent[] {
  ctx.refresh?.();
  const out: BlockStatusExtent[] = [];
  const end = offset + length;
  let at = offset; // bytes before `at` are described
  const add = (upTo: number, flags: number): boolean => {
    const to = Math.min(upTo, end);
    if (to <= at) return true;
    const last = out[out.length - 1];
    // lengths fit in u32: together they never exceed the request's u32 length
    if (last && last.flags === flags) last.length += to - at;
    else {
      if (out.length >= maxExtents) return false;
      out.push({ length: to - at, flags });
    }
    at = to;
    return true;
  };
  const first = Math.floor(offset / blockSize);
  const last = Math.ceil(end / blockSize);
  let full = false;
  try {
    map.walkRange(first, last, (lbn, vbn) => {
      if (full) return;
      if (!add(lbn * blockSize, ctx.unmapped) || !add((lbn + 1) * blockSize, ctx.mapped(vbn))) {
        full = true;
        throw STOP;
      }
    });
  } catch (err) {
    if (err !== STOP) throw err;
  }
  if (!full) add(end, ctx.unmapped);
  return out;
}

const STOP = Symbol('enough extents');
