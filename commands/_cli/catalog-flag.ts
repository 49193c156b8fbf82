// --catalog, shared by the commands that read or write the dump catalog.
import { Flags } from '@oclif/core';
import { Catalog, defaultCatalogPath } from '../../src/catalog/index.js';

export const catalogFlag = Flags.string({
  helpValue: 'FILE',
  description: 'Catalog file [default: $IMGSTREAM_CATALOG, else $XDG_STATE_HOME/imgstream/catalog.json, else ~/.local/state/imgstream/catalog.json].',
});

export function openCatalog(flag: string | undefined): Catalog {
  return new Catalog(flag ?? defaultCatalogPath());
}
