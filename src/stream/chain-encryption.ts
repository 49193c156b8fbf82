// Encrypted chains (restore and verify): an unencrypted stream where the chain says an
// encrypted one belongs could be anyone's (a plain stream needs no key to write and has
// nothing that authenticates it). Where the catalog records the dump as encrypted, or a
// stream before it in the chain is encrypted (--allow-unencrypted reads a chain encrypted
// from some level on, not one that goes back), it is refused (auth), --allow-unencrypted
// or not, before anything of it is applied.
//
// Streams given by place (restore --from, verify) are looked up in the catalog too: a plain
// stream is refused when the catalog records as encrypted the dump of its id, the dump at
// its place (a file, an S3 object, a peer's stream), or, when it records no dump of its id
// (anyone can pick one), a dump of the same volume, level and top snapshot.
import { AuthError, ImgstreamError } from '../core/errors.js';
import { samePlace, type DumpRecord } from '../catalog/index.js';
import type { StreamHeader } from '../format/image-stream.js';
import type { MediaPosition } from '../media/medium.js';

/** `expected`: what the catalog records of the dump at that place; `encryptedBefore`: the last encrypted stream of the chain before it. */
export function refuseUnencryptedInPlace(name: string, header: StreamHeader, expected: { streamId: string; encrypted?: boolean } | undefined, encryptedBefore: string | null): void {
  if (header.encryption) return;
  if (expected?.encrypted) {
    throw new AuthError(`${name}: the stream is not encrypted, and the catalog records dump ${expected.streamId.slice(0, 8)} there as encrypted: anyone could have written it in its place`, REBUILD_HINT);
  }
  if (encryptedBefore !== null) {
    throw new AuthError(`${name}: the stream is not encrypted, and ${encryptedBefore} before it in the chain is: anyone could have written it in its place`, '--allow-unencrypted reads a chain encrypted from some level on, not one that goes back to unencrypted streams');
  }
}

const REBUILD_HINT = 'find the dump on other media, or rebuild the catalog from what the media hold: imgstream catalog rebuild --from SOURCE...';

/**
 * What the catalog records encrypted, for streams given by place. The catalog is read when the
 * first unencrypted stream needs it (an encrypted stream authenticates itself), once.
 */
export class RecordedEncryption {
  private records: DumpRecord[] | null = null;

  /** `unreadable`: told, in one line, that the catalog could not be read (then it holds nothing, as when there is none). */
  constructor(private readonly readCatalog: () => DumpRecord[], private readonly unreadable: (line: string) => void) {}

  /**
   * The catalog's records. One that cannot be read (damaged) checks nothing, said in one
   * line, as none at all checks nothing: a damaged catalog must not stop the restore or
   * verify of the streams it was meant to find (a disaster is when both happen).
   */
  private read(name: string): DumpRecord[] {
    try {
      return this.readCatalog();
    } catch (err) {
      if (!(err instanceof ImgstreamError)) throw err;
      this.unreadable(`${err.message}: ${name} is not encrypted, and whether the catalog records its dump as encrypted is not known (${err.hint ?? 'correct it'})`);
      return [];
    }
  }

  /**
   * Throws AuthError when `header` is not encrypted and the catalog records as encrypted the
   * dump of its id, the dump at `position`, or (for an id it records no dump of) a dump of the
   * same volume, level and top snapshot. A stream of an id the catalog records as a plain dump
   * is that dump as far as anything can tell, as restore --as-of takes it.
   */
  refuse(name: string, header: StreamHeader, position: MediaPosition): void {
    if (header.encryption) return;
    const records = (this.records ??= this.read(name));
    const top = header.snapshots.find((x) => x.id === header.top.id);
    // by identity: the id and the CP that took it (and when, where both say); records without a generation by id and name
    const sameTop = (d: DumpRecord): boolean =>
      d.top.id === header.top.id &&
      (d.top.generation === undefined ? d.top.name === header.top.name : d.top.generation === header.top.generation && (d.top.createdMs === undefined || top === undefined || d.top.createdMs === top.createdMs));
    const own = records.find((d) => d.id === header.streamId);
    const byId = own?.encrypted ? own : undefined;
    const byPlace = records.find((d) => d.encrypted && samePlace(d.media, position));
    const byState = own ? undefined : records.find((d) => d.encrypted && d.volume.uuid === header.volume.uuid && d.level === header.level && sameTop(d));
    const d = byId ?? byPlace ?? byState;
    if (!d) return;
    const id = d.id.slice(0, 8);
    const what = d === byId ? `dump ${id}, whose id it carries,` : d === byPlace ? `dump ${id} there` : `dump ${id} of the same volume, level ${d.level} and top snapshot "${d.top.name}"`;
    throw new AuthError(
      `${name}: the stream is not encrypted, and the catalog records ${what} as encrypted: anyone could have written it in its place`,
      `read the encrypted dump instead (imgstream catalog show ${id} says where it is), or rebuild the catalog from what the media hold: imgstream catalog rebuild --from SOURCE...`,
    );
  }
}
