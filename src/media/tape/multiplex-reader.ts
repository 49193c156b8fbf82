// Reads multiplexed tape files (see multiplex-format.ts) by seeking: the backup log at the
// end of the file says where every member is, so one stream is read without reading the
// others' members. Without a readable log (a file cut short, a damaged log) the members'
// tar headers are walked instead, 512 bytes per member, as far as the archive is intact:
// every stream that ended before the damage is still whole. Every member read is checked
// against its own tar header, so a wrong log cannot hand out another stream's bytes: a log
// whose members do not follow one another, or that a member's header contradicts, is
// damaged, and the headers are walked instead (the streams are whole).
import fs from 'node:fs';
import { CorruptError, FormatVersionError, fromSystemError } from '../../core/errors.js';
import { MAX_META_BYTES, TAR_BLOCK, decodeClosing, decodeLabel, memberName, parseMemberName, roundUp, type TapeClosing, type TapeLabel } from './tape-format.js';
import { decodeBackupLog, decodeMultiplexLabel, type BackupLog, type LoggedKind, type MultiplexLabel } from './multiplex-format.js';
import { decodeTarHeader, isZeroBlock } from './tar-header.js';
import type { StreamProgress, TapeFileEnding, TapeFileRef } from './tape-file-reader.js';

const DAMAGE_HINT = '`tar tvf` on the tape file shows how far it can be read';
const CHUNK = 1 << 20;

/** Bytes read from tape files, for restore's report (and the test that only a stream's members are read). */
export interface ReadCounter {
  bytes: number;
}

export interface MultiplexMember {
  kind: LoggedKind;
  streamId: string;
  /** Index of a part. */
  index: number | null;
  offset: number;
  size: number;
}

/** A stream of a multiplexed tape file, as the log or its label says. */
export interface MultiplexStreamInfo {
  streamId: string;
  volume: { path: string; uuid: string | null } | null;
}

export interface MultiplexIndex {
  label: MultiplexLabel;
  members: MultiplexMember[];
  streams: MultiplexStreamInfo[];
  log: BackupLog | null;
  /** Without a log: where the walk stopped and why (null: it reached the end of the archive). */
  damage: string | null;
  /** The walk stopped at damage before the end of the archive: members after it (whole streams too) are lost. */
  cut: boolean;
}

function pread(fd: number, ref: TapeFileRef, buf: Buffer, position: number, counter: ReadCounter): number {
  let done = 0;
  try {
    while (done < buf.length) {
      const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
      if (n === 0) break;
      done += n;
    }
  } catch (err) {
    throw fromSystemError(err, ref.path, `reading ${ref.name}`);
  }
  counter.bytes += done;
  return done;
}

function open(ref: TapeFileRef): number {
  try {
    return fs.openSync(ref.path, 'r');
  } catch (err) {
    throw fromSystemError(err, ref.path, `opening ${ref.name}`);
  }
}

/** A member of another format version, named by the tape file it is in. */
function named(err: unknown, ref: TapeFileRef): unknown {
  return err instanceof FormatVersionError ? err.at(ref.name) : err;
}

/** The multiplex label of a tape file whose first member is one (null: another kind of tape file). */
export function readMultiplexLabelAt(fd: number, ref: TapeFileRef, counter: ReadCounter): MultiplexLabel | null {
  try {
    return multiplexLabelAt(fd, ref, counter);
  } catch (err) {
    throw named(err, ref);
  }
}

function multiplexLabelAt(fd: number, ref: TapeFileRef, counter: ReadCounter): MultiplexLabel | null {
  const head = Buffer.alloc(TAR_BLOCK);
  if (pread(fd, ref, head, 0, counter) < TAR_BLOCK) return null;
  const h = decodeTarHeader(head);
  const m = h && parseMemberName(h.name);
  if (!h || !m || m.kind !== 'multiplex' || h.size > MAX_META_BYTES) return null;
  const data = Buffer.alloc(h.size);
  if (pread(fd, ref, data, TAR_BLOCK, counter) < h.size) return null;
  const label = decodeMultiplexLabel(data);
  return label && label.id === m.streamId ? label : null;
}

/**
 * The backup log at the end of the file: the last member before the end of the archive.
 * Found by walking back from the end to the first valid tar header; null when that header
 * is not the log's (a file cut short) or the log does not decode.
 */
function readLogFromEnd(fd: number, ref: TapeFileRef, label: MultiplexLabel, size: number, counter: ReadCounter): { log: BackupLog; at: number } | null {
  const wanted = memberName.log(label.id);
  let end = -1; // end of the last non-zero block
  const win = Buffer.alloc(CHUNK);
  // windows from 16 KiB up: the end of the archive, the last record's padding and a small
  // log are read without touching the members before them
  for (let top = Math.floor(size / TAR_BLOCK) * TAR_BLOCK, w = 16 << 10; top > 0; w = Math.min(CHUNK, w * 2)) {
    const from = Math.max(0, top - w);
    const n = top - from;
    pread(fd, ref, win.subarray(0, n), from, counter);
    for (let b = n - TAR_BLOCK; b >= 0; b -= TAR_BLOCK) {
      const block = win.subarray(b, b + TAR_BLOCK);
      if (end < 0) {
        if (!isZeroBlock(block)) end = from + b + TAR_BLOCK;
        continue;
      }
      const h = decodeTarHeader(block);
      if (!h) continue;
      const at = from + b;
      if (h.name !== wanted || at + TAR_BLOCK + roundUp(h.size, TAR_BLOCK) !== end) return null;
      const data = Buffer.alloc(h.size);
      if (pread(fd, ref, data, at + TAR_BLOCK, counter) < h.size) return null;
      const log = decodeBackupLog(data.toString('utf8'));
      return log && log.header.id === label.id && log.header.sequence === label.sequence ? { log, at } : null;
    }
    top = from;
  }
  return null;
}

/** Walks the tar headers from the start, as far as the archive is intact. */
function walkMembers(fd: number, ref: TapeFileRef, size: number, counter: ReadCounter): { members: MultiplexMember[]; streams: MultiplexStreamInfo[]; damage: string | null } {
  const members: MultiplexMember[] = [];
  const streams: MultiplexStreamInfo[] = [];
  const head = Buffer.alloc(TAR_BLOCK);
  let offset = 0;
  for (;;) {
    if (offset + TAR_BLOCK > size) return { members, streams, damage: `the tape file ends at byte ${size}, before the end of the archive` };
    pread(fd, ref, head, offset, counter);
    if (isZeroBlock(head)) return { members, streams, damage: members.some((m) => m.kind === 'multiplex') ? null : 'empty archive' };
    const h = decodeTarHeader(head);
    if (!h) return { members, streams, damage: `damaged tar header at byte ${offset}` };
    if (offset + TAR_BLOCK + h.size > size) return { members, streams, damage: `the tape file ends inside member ${h.name}, at byte ${offset}` };
    const m = parseMemberName(h.name);
    if (!m) return { members, streams, damage: `unexpected member ${h.name} at byte ${offset}` };
    if (m.kind === 'log') return { members, streams, damage: null };
    if (m.kind === 'label' && h.size <= MAX_META_BYTES) {
      const data = Buffer.alloc(h.size);
      pread(fd, ref, data, offset + TAR_BLOCK, counter);
      const label = decodeLabel(data);
      if (label && !streams.some((s) => s.streamId === m.streamId)) streams.push({ streamId: m.streamId, volume: label.volume ?? null });
    }
    members.push({ kind: m.kind as LoggedKind, streamId: m.streamId, index: m.kind === 'part' ? m.index : null, offset, size: h.size });
    offset += TAR_BLOCK + roundUp(h.size, TAR_BLOCK);
  }
}

/**
 * Where a well-formed log cannot be right, said in a few words (null: it may be): its
 * members must follow one another from the multiplex label at byte 0 to the log member at
 * `at`, each where the one before ends. A wrong size or offset shows here without reading
 * a member; what it cannot show (a size that rounds up to the same blocks) the members'
 * own headers show as they are read (readMultiplexedParts).
 */
function logMisplaces(log: BackupLog, at: number): string | null {
  let next = 0;
  for (const e of log.entries) {
    if (e.offset !== next) return `its entry of a ${e.kind} member of stream ${e.stream} says byte ${e.offset}, where the member before ends at byte ${next}`;
    next = e.offset + TAR_BLOCK + roundUp(e.size, TAR_BLOCK);
  }
  if (log.entries[0]?.kind !== 'multiplex') return 'it does not begin with the multiplex label';
  return next === at ? null : `its members end at byte ${next}, but the log member is at byte ${at}`;
}

/**
 * The log disagrees with a member's own header (what logMisplaces cannot see): the index
 * is made again from the headers, as for a file without a log, and says the log is damaged.
 */
function walkInstead(ref: TapeFileRef, index: MultiplexIndex, wrong: string, counter: ReadCounter): void {
  const fd = open(ref);
  try {
    const walked = walkMembers(fd, ref, fs.fstatSync(fd).size, counter);
    // the streams the log named are kept: those the walk finds are the same
    Object.assign(index, { members: walked.members, log: null, damage: walked.damage ?? `the backup log is damaged: ${wrong}`, cut: walked.damage !== null });
    for (const s of walked.streams) if (!index.streams.some((x) => x.streamId === s.streamId)) index.streams.push(s);
  } finally {
    fs.closeSync(fd);
  }
}

/** Where every member of a multiplexed tape file is: from its log, or by walking its headers. */
export function indexMultiplexFile(ref: TapeFileRef, counter: ReadCounter): MultiplexIndex {
  const fd = open(ref);
  try {
    const label = readMultiplexLabelAt(fd, ref, counter);
    if (!label) throw new CorruptError(`${ref.name}: damaged multiplex label`, DAMAGE_HINT);
    const size = fs.fstatSync(fd).size;
    const found = readLogFromEnd(fd, ref, label, size, counter);
    const wrong = found ? logMisplaces(found.log, found.at) : null;
    if (found && wrong === null) {
      const log = found.log;
      const members = log.entries.map((e) => ({ kind: e.kind, streamId: e.stream, index: e.seq, offset: e.offset, size: e.size }));
      const streams = log.header.sources.filter((s) => s.streamId !== null && members.some((m) => m.streamId === s.streamId)).map((s) => ({ streamId: s.streamId!, volume: s.volume }));
      return { label, members, streams, log, damage: null, cut: false };
    }
    const walked = walkMembers(fd, ref, size, counter);
    const why = wrong === null ? 'the backup log is missing or damaged' : `the backup log is damaged: ${wrong}`;
    return { label, ...walked, log: null, damage: walked.damage ?? why, cut: walked.damage !== null };
  } catch (err) {
    throw named(err, ref);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Reads the planned ranges of one stream's members in order, a few ahead of the consumer,
 * so the file is read while the restore works on what came before (as a read stream does
 * for a tape file of one dump).
 */
class ReadAhead {
  private readonly queue: Array<Promise<Buffer>> = [];
  private i = 0;
  constructor(
    private readonly fh: fs.promises.FileHandle,
    private readonly ranges: Array<{ pos: number; len: number }>,
    private readonly counter: ReadCounter,
    private readonly depth = 3,
  ) {}

  next(): Promise<Buffer> {
    while (this.queue.length < this.depth && this.i < this.ranges.length) {
      const { pos, len } = this.ranges[this.i++];
      const p = (async () => {
        const buf = Buffer.allocUnsafe(len);
        let done = 0;
        while (done < len) {
          const r = await this.fh.read(buf, done, len - done, pos + done);
          if (r.bytesRead === 0) break;
          done += r.bytesRead;
        }
        this.counter.bytes += done;
        return done < len ? buf.subarray(0, done) : buf;
      })();
      p.catch(() => {});
      this.queue.push(p);
    }
    const p = this.queue.shift();
    if (!p) throw new Error('read past the planned ranges');
    return p;
  }

  /** Waits for reads still in flight (before the file is closed). */
  async drain(): Promise<void> {
    await Promise.allSettled(this.queue.splice(0));
  }
}

/** The ranges memberData reads for `m`: its header, then its data in chunks. */
function rangesOf(m: MultiplexMember, chunk = CHUNK): Array<{ pos: number; len: number }> {
  const out = [{ pos: m.offset, len: TAR_BLOCK }];
  for (let done = 0; done < m.size; done += chunk) out.push({ pos: m.offset + TAR_BLOCK + done, len: Math.min(chunk, m.size - done) });
  return out;
}

/** Does this header block name member `m` of the index, at its size? */
function headerIs(head: Buffer, m: MultiplexMember): boolean {
  const h = head.length === TAR_BLOCK ? decodeTarHeader(head) : null;
  const p = h && parseMemberName(h.name);
  return !!h && !!p && p.streamId === m.streamId && p.kind === m.kind && h.size === m.size && (p.kind !== 'part' || p.index === m.index);
}

/** One member's data, checked against its own tar header (`head`: read already). */
async function* memberData(ra: ReadAhead, ref: TapeFileRef, m: MultiplexMember, head?: Buffer, chunk = CHUNK): AsyncGenerator<Buffer> {
  if (!headerIs(head ?? (await ra.next()), m)) {
    throw new CorruptError(`${ref.name}: no ${m.kind} member of stream ${m.streamId} at byte ${m.offset} (damaged tape file or backup log)`, DAMAGE_HINT);
  }
  for (let done = 0; done < m.size; ) {
    const n = Math.min(chunk, m.size - done);
    const buf = await ra.next();
    if (buf.length < n) throw new CorruptError(`${ref.name}: truncated: the tape file ends inside a member of stream ${m.streamId}`, DAMAGE_HINT);
    done += n;
    yield buf;
  }
}

async function metaOf(ra: ReadAhead, ref: TapeFileRef, m: MultiplexMember, head?: Buffer): Promise<Buffer> {
  if (m.size > MAX_META_BYTES) throw new CorruptError(`${ref.name}: member ${m.kind} of stream ${m.streamId} is too large (${m.size} bytes)`, DAMAGE_HINT);
  const chunks: Buffer[] = [];
  for await (const c of memberData(ra, ref, m, head)) chunks.push(c);
  return Buffer.concat(chunks);
}

export type MultiplexEnding = TapeFileEnding;

/** Does the stream begin in this tape file (a tape after the first: its label here is at part 0), rather than continue into it? */
export async function streamStartsHere(ref: TapeFileRef, index: MultiplexIndex, streamId: string, counter: ReadCounter): Promise<boolean> {
  const first = index.members.find((m) => m.streamId === streamId);
  if (!first || first.kind !== 'label') return false;
  const fh = await fs.promises.open(ref.path, 'r');
  const ra = new ReadAhead(fh, rangesOf(first), counter);
  try {
    const label = decodeLabel(await metaOf(ra, ref, first));
    return label !== null && label.firstPart === 0;
  } catch {
    return false;
  } finally {
    await ra.drain();
    await fh.close();
  }
}

/**
 * Yields the part bytes of stream `streamId` in one multiplexed tape file and returns its
 * ending there (end, or continued on the next tape). `progress` carries parts and bytes
 * across the stream's tape files as for single tape files. A stream its dump gave up
 * (aborted) or one the file ends before is a CorruptError naming it.
 */
export async function* readMultiplexedParts(ref: TapeFileRef, index: MultiplexIndex, streamId: string, progress: StreamProgress, counter: ReadCounter): AsyncGenerator<Buffer, MultiplexEnding> {
  const corrupt = (what: string) => new CorruptError(`${ref.name}: ${what}`, DAMAGE_HINT);
  const info = index.streams.find((s) => s.streamId === streamId);
  const who = `stream ${streamId}${info?.volume ? ` (${info.volume.path})` : ''}`;
  let mine = index.members.filter((m) => m.streamId === streamId);
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(ref.path, 'r');
  } catch (err) {
    throw fromSystemError(err, ref.path, `opening ${ref.name}`);
  }
  let ra = new ReadAhead(fh, mine.flatMap((m) => rangesOf(m)), counter);
  /** The stream's members, each with its header read: as the log says, or (from one whose header contradicts it) as the walk finds them. */
  async function* members(): AsyncGenerator<{ m: MultiplexMember; head: Buffer }> {
    for (let i = 0; i < mine.length; i++) {
      const head = await ra.next();
      if (!index.log || headerIs(head, mine[i])) {
        yield { m: mine[i], head };
        continue;
      }
      walkInstead(ref, index, `it has no ${mine[i].kind} member of stream ${streamId} at byte ${mine[i].offset}`, counter);
      const walked = index.members.filter((x) => x.streamId === streamId);
      // the members read so far were checked against their headers: the walk finds them too
      if (walked.slice(0, i).some((x, k) => x.offset !== mine[k].offset)) throw corrupt(`the members of ${who} are not where its backup log said`);
      await ra.drain();
      mine = walked;
      ra = new ReadAhead(fh, mine.slice(i).flatMap((x) => rangesOf(x)), counter);
      if (i < mine.length) yield { m: mine[i], head: await ra.next() };
    }
  }
  try {
    let label: TapeLabel | null = null;
    for await (const { m, head } of members()) {
      if (!label) {
        if (m.kind !== 'label') throw corrupt(`${who} has no label before its ${m.kind} member`);
        label = decodeLabel(await metaOf(ra, ref, m, head));
        if (!label || label.streamId !== streamId) throw corrupt(`damaged label of ${who}`);
        if (label.sequence !== index.label.sequence || label.firstPart !== progress.parts) {
          throw corrupt(`expected ${who} from part ${progress.parts} in tape ${index.label.sequence}, found its tape ${label.sequence} from part ${label.firstPart}`);
        }
        progress.streamId = streamId;
        continue;
      }
      if (m.kind === 'part') {
        if (m.index !== progress.parts) throw corrupt(`part ${m.index} of ${who} where part ${progress.parts} belongs`);
        for await (const chunk of memberData(ra, ref, m, head)) {
          progress.bytes += chunk.length;
          yield chunk;
        }
        progress.parts++;
        continue;
      }
      if (m.kind !== 'end' && m.kind !== 'continued' && m.kind !== 'aborted') throw corrupt(`unexpected ${m.kind} member of ${who}`);
      const body = await metaOf(ra, ref, m, head);
      const ending = decodeClosing(body) as (TapeClosing & { error?: string }) | null;
      if (!ending || ending.streamId !== streamId || ending.sequence !== index.label.sequence) throw corrupt(`damaged ${m.kind} member of ${who}`);
      if (m.kind === 'aborted') {
        // the source's error is in the log (its dump gives up before the error reaches the writer)
        const error = ending.error ?? index.log?.header.sources.find((x) => x.streamId === streamId)?.error;
        throw corrupt(`${who} is incomplete: its dump failed${error ? ` (${error})` : ''} and gave it up after ${ending.parts} parts`);
      }
      if (ending.parts !== progress.parts || ending.bytes !== progress.bytes) {
        throw corrupt(`the ${m.kind} member of ${who} counts ${ending.parts} parts and ${ending.bytes} bytes, but ${progress.parts} parts and ${progress.bytes} bytes were read`);
      }
      return { ...ending, kind: m.kind };
    }
    if (!label) throw corrupt(`${who} is not in this tape file`);
    throw corrupt(`${who} is incomplete: the tape file ends before its end member (${index.damage ?? 'no end member'})`);
  } catch (err) {
    throw named(err, ref);
  } finally {
    await ra.drain();
    await fh.close();
  }
}
