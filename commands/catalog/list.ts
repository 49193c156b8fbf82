import { Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { catalogFlag, openCatalog } from '../_cli/catalog-flag.js';
import { formatSize } from '../../src/size.js';

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
      this.say(`${'ID'.padEnd(10)} ${'DATE'.padEnd(20)} ${'VOLUME'.padEnd(10)} LVL ${'TOP'.padEnd(16)} ${'BASE'.padEnd(16)} ${'SIZE'.padStart(10)}  WHERE`);
      for (const d of dumps) {
        const where = d.media.kind === 'tape' ? `tape ${d.media.location} file ${d.media.tapeFile}` : `${d.media.kind} ${d.media.location}`;
        this.say(`${d.id.slice(0, 8).padEnd(10)} ${d.date.slice(0, 19).padEnd(20)} ${d.volume.uuid.slice(0, 8).padEnd(10)} ${String(d.level).padStart(3)} ${d.top.name.padEnd(16)} ${(d.base?.name ?? '-').padEnd(16)} ${formatSize(d.streamBytes).padStart(10)}  ${where}`);
      }
    }
    return { catalog: catalog.file, dumps };
  }
}
