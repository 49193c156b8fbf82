import { Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { catalogFlag, openCatalog } from '../_cli/catalog-flag.js';
import { formatSize } from '../../src/core/size.js';
import { tableLines } from '../_cli/table.js';
import { uuidAt } from '../../src/stream/volume-pick.js';
import path from 'node:path';
import { describePlace } from '../../src/catalog/record-place.js';

export default class CatalogList extends ImgstreamCommand {
  static override summary = 'List the dumps recorded in the catalog (KEY: yes for an encrypted stream, which restore and verify read only with its key).';
  static override description = 'WHERE is the medium and place of each stream: a file, a tape and its tape file, a peer, or an S3 object with the store it was written to ("at ENDPOINT" for an S3-compatible store, nothing for AWS, and "(path-style)" for that addressing), which restore --as-of reads it from; "a pipe (stdin): not readable back" for a dump catalog rebuild read from a pipe (--from -, or tape files piped into tape:/dev/stdin), which restore --as-of cannot read (restore it with --from the tape directory, device or file it is on, or record where it is with catalog rebuild --from tape:DIR), and "tape DEV (a drive: no tape file number)" for one on a tape drive (position the tape, then restore --from tape:DEV). With --json, each dump\'s media holds them as kind, location, tapeFile, endpoint and pathStyle.';
  static override examples = ['<%= config.bin %> catalog list', '<%= config.bin %> catalog list --volume 5f1c --json'];
  static override flags = {
    catalog: catalogFlag,
    volume: Flags.string({ helpValue: 'UUID|PATH', description: 'Only dumps of this volume: a uuid or its prefix, the volume\'s path as dumped, or the volume at that path now (its uuid).' }),
  };

  async run() {
    const { flags } = await this.parse(CatalogList);
    const catalog = openCatalog(flags.catalog);
    const all = catalog.read().sort((a, b) => a.date.localeCompare(b.date));
    let dumps = all;
    if (flags.volume) {
      // a uuid or its prefix; a path as dumped (however written), or the volume there now (a rebuilt catalog knows no paths)
      const sel = flags.volume;
      const here = uuidAt(sel);
      const abs = path.resolve(sel);
      dumps = all.filter((d) => d.volume.uuid.startsWith(sel.toLowerCase()) || d.volume.uuid === here || (d.volume.path !== null && path.resolve(d.volume.path) === abs));
    }
    if (dumps.length === 0) this.say(flags.volume && all.length ? `no dumps of volume ${flags.volume} in ${catalog.file} (it holds ${all.length} dump${all.length === 1 ? '' : 's'} of other volumes)` : `no dumps in ${catalog.file}`);
    else {
      const rows = dumps.map((d) => [
        d.id.slice(0, 8),
        d.date.slice(0, 19),
        d.volume.uuid.slice(0, 8),
        String(d.level),
        d.top.name,
        d.base?.name ?? '-',
        formatSize(d.streamBytes),
        d.encrypted ? 'yes' : '-',
        describePlace(d.media),
      ]);
      for (const l of tableLines(['ID', 'DATE', 'VOLUME', 'LVL', 'TOP', 'BASE', 'SIZE', 'KEY', 'WHERE'], rows, new Set([3, 6]))) this.say(l);
    }
    return { catalog: catalog.file, dumps };
  }
}
