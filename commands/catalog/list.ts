import { Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { catalogFlag, openCatalog } from '../_cli/catalog-flag.js';
import { formatSize } from '../../src/core/size.js';
import { tableLines } from '../_cli/table.js';

export default class CatalogList extends ImgstreamCommand {
  static override summary = 'List the dumps recorded in the catalog.';
  static override examples = ['<%= config.bin %> catalog list', '<%= config.bin %> catalog list --volume 5f1c --json'];
  static override flags = {
    catalog: catalogFlag,
    volume: Flags.string({ helpValue: 'UUID|PATH', description: 'Only dumps of this volume (uuid prefix or volume path).' }),
  };

  async run() {
    const { flags } = await this.parse(CatalogList);
    const catalog = openCatalog(flags.catalog);
    let dumps = catalog.read().sort((a, b) => a.date.localeCompare(b.date));
    if (flags.volume) dumps = dumps.filter((d) => d.volume.uuid.startsWith(flags.volume!) || d.volume.path === flags.volume);
    if (dumps.length === 0) this.say(`no dumps in ${catalog.file}`);
    else {
      const rows = dumps.map((d) => [
        d.id.slice(0, 8),
        d.date.slice(0, 19),
        d.volume.uuid.slice(0, 8),
        String(d.level),
        d.top.name,
        d.base?.name ?? '-',
        formatSize(d.streamBytes),
        d.media.kind === 'tape' ? `tape ${d.media.location} file ${d.media.tapeFile}` : `${d.media.kind} ${d.media.location}`,
      ]);
      for (const l of tableLines(['ID', 'DATE', 'VOLUME', 'LVL', 'TOP', 'BASE', 'SIZE', 'WHERE'], rows, new Set([3, 6]))) this.say(l);
    }
    return { catalog: catalog.file, dumps };
  }
}
