// restore --as-of: the chain of dumps from the catalog, opened on their media.
import { chainFor, type Catalog } from '../catalog/catalog.js';
import { NotFoundError } from '../errors.js';
import type { StreamSource } from '../media/medium.js';
import { sourceForPosition, type SourceOptions } from '../media/resolve.js';
import { Volume } from '../volume/volume.js';
import fs from 'node:fs';

export function sourcesForChain(catalog: Catalog, volumePath: string, asOf: string, opts: SourceOptions = {}): StreamSource[] {
  let dumps = catalog.read();
  // restoring onto an existing volume: only its own dumps
  if (fs.existsSync(volumePath)) {
    const vol = Volume.open(volumePath, { write: false });
    try {
      dumps = dumps.filter((d) => d.volume.uuid === vol.rootRecord.uuid);
    } finally {
      vol.close();
    }
  }
  if (dumps.length === 0) throw new NotFoundError(`the catalog ${catalog.file} has no dumps${fs.existsSync(volumePath) ? ` of ${volumePath}` : ''}`);
  const named = dumps.filter((d) => d.top.name === asOf);
  const uuids = new Set((named.length ? named : dumps).map((d) => d.volume.uuid));
  if (uuids.size > 1 && named.length) throw new NotFoundError(`snapshot "${asOf}" is the top of dumps of ${uuids.size} volumes`, 'restore onto an existing volume of the one you mean, or use --from');
  return chainFor(dumps, asOf).map((d) => sourceForPosition(d.media, opts));
}
