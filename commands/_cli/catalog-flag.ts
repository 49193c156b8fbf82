// --catalog, shared by the commands that read or write the dump catalog.
import { Flags } from '@oclif/core';
import { openCatalogAt, type Catalog } from '../../src/catalog/index.js';

export const catalogFlag = Flags.string({
  helpValue: 'FILE',
  description: 'Catalog file, a regular file in a directory that exists [default: $IMGSTREAM_CATALOG, else $XDG_STATE_HOME/imgstream/catalog.json, else ~/.local/state/imgstream/catalog.json, whose directory is created].',
});

export function openCatalog(flag: string | undefined): Catalog {
  return openCatalogAt(flag);
}
