// What a well-formed catalog record is, field by field. A catalog is a file people can
// edit (or damage); every command that reads it trusts its records (restore --as-of
// picks a chain by their levels, dates and snapshot ids), so a record that is not exactly
// what a dump writes is refused, naming the field, rather than half used.
import { endpointProblem } from '../media/s3/s3-place.js';

/** The media kinds a record may name (MediaPosition.kind). */
export const MEDIA_KINDS: readonly string[] = ['file', 'stdout', 'stdin', 'tape', 'memory', 'peer', 's3'];

const STREAM_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const VOLUME_UUID = /^[0-9a-f]{32}$/;
const SHA256 = /^[0-9a-f]{64}$/;
/** As Date.toISOString() writes it: records are ordered by comparing these strings. */
const ISO_DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

type Fields = Record<string, unknown>;

const isObject = (v: unknown): v is Fields => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
const isName = (v: unknown): boolean => typeof v === 'string' && v !== '';
const show = (v: unknown): string => {
  if (v === undefined) return '(missing)';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
};

function snapshotRef(v: unknown, field: string): string | null {
  if (!isObject(v)) return `${field} is not an object`;
  if (!isCount(v.id)) return `${field}.id ${show(v.id)} is not a snapshot id`;
  if (!isName(v.name)) return `${field}.name ${show(v.name)} is not a snapshot name`;
  if (v.generation !== undefined && !isCount(v.generation)) return `${field}.generation ${show(v.generation)} is not a CP generation`;
  if (v.createdMs !== undefined && !isCount(v.createdMs)) return `${field}.createdMs ${show(v.createdMs)} is not a time in ms`;
  return null;
}

function date(v: unknown, field: string): string | null {
  if (typeof v !== 'string' || !ISO_DATE.test(v) || Number.isNaN(Date.parse(v))) return `${field} ${show(v)} is not a date (YYYY-MM-DDTHH:MM:SS.mmmZ)`;
  return null;
}

function media(v: unknown): string | null {
  if (!isObject(v)) return 'media is not an object';
  if (typeof v.kind !== 'string' || !MEDIA_KINDS.includes(v.kind)) return `media.kind ${show(v.kind)} is not one of ${MEDIA_KINDS.join(', ')}`;
  if (!isName(v.location)) return `media.location ${show(v.location)} is not a place`;
  if (v.tapeFile !== undefined && !(Number.isSafeInteger(v.tapeFile) && (v.tapeFile as number) >= 1)) return `media.tapeFile ${show(v.tapeFile)} is not a tape file number`;
  if (v.tapes !== undefined && !(Array.isArray(v.tapes) && v.tapes.every(isName))) return `media.tapes ${show(v.tapes)} is not a list of tapes`;
  if (v.stream !== undefined && !isName(v.stream)) return `media.stream ${show(v.stream)} is not a stream id`;
  if (v.endpoint !== undefined) {
    // restore --as-of sends requests (and the credentials' signatures) there
    if (v.kind !== 's3') return `media.endpoint ${show(v.endpoint)} on a ${v.kind} medium (only S3 objects have one)`;
    if (typeof v.endpoint !== 'string' || endpointProblem(v.endpoint) !== null) return `media.endpoint ${show(v.endpoint)} is not an http or https URL`;
    const url = new URL(v.endpoint);
    if (url.username !== '' || url.password !== '') return 'media.endpoint holds a user name or password (credentials are never recorded)';
  }
  if (v.pathStyle !== undefined && !(v.pathStyle === true && v.kind === 's3')) return `media.pathStyle ${show(v.pathStyle)} is not true on an S3 object`;
  return null;
}

/** What is wrong with a catalog record ("level 42 is not a dump level 0 to 9"), or null when it is well formed. */
export function recordProblem(d: unknown): string | null {
  if (!isObject(d)) return 'it is not an object';
  if (typeof d.id !== 'string' || !STREAM_ID.test(d.id)) return `id ${show(d.id)} is not a stream id (a lowercase UUID)`;
  if (!isObject(d.volume)) return 'volume is not an object';
  if (typeof d.volume.uuid !== 'string' || !VOLUME_UUID.test(d.volume.uuid)) return `volume.uuid ${show(d.volume.uuid)} is not a volume uuid (32 hex digits)`;
  if (d.volume.path !== null && !isName(d.volume.path)) return `volume.path ${show(d.volume.path)} is neither a path nor null`;
  if (!Number.isInteger(d.level) || (d.level as number) < 0 || (d.level as number) > 9) return `level ${show(d.level)} is not a dump level 0 to 9`;
  if (d.base !== null) {
    const bad = snapshotRef(d.base, 'base');
    if (bad) return `${bad} (nor null)`;
  }
  const top = snapshotRef(d.top, 'top');
  if (top) return top;
  if (!Array.isArray(d.snapshots) || !d.snapshots.every(isName)) return `snapshots ${show(d.snapshots)} is not a list of snapshot names`;
  if (typeof d.expression !== 'string' || d.expression === '') return `expression ${show(d.expression)} is not a storage image expression`;
  const when = date(d.date, 'date') ?? date(d.finished, 'finished');
  if (when) return when;
  const where = media(d.media);
  if (where) return where;
  for (const k of ['blocks', 'dataBytes', 'streamBytes'] as const) if (!isCount(d[k])) return `${k} ${show(d[k])} is not a count`;
  if (typeof d.sha256 !== 'string' || !SHA256.test(d.sha256)) return `sha256 ${show(d.sha256)} is not a SHA-256 (64 hex digits)`;
  if (d.status !== 'complete') return `status ${show(d.status)} is not "complete"`;
  if (d.encrypted !== undefined && d.encrypted !== true) return `encrypted ${show(d.encrypted)} is not true`;
  return null;
}
