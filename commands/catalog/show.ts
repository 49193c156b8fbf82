import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { catalogFlag, openCatalog } from '../_cli/catalog-flag.js';
import { describePlace } from '../../src/catalog/record-place.js';

export default class CatalogShow extends ImgstreamCommand {
  static override summary = 'Show one dump record of the catalog.';
  static override description = 'Every field of the record: the volume, level, base and top snapshots, the storage image, the dates, where the stream is (media: what restore --as-of reads it from; "a pipe (stdin): not readable back" for a dump catalog rebuild read from a pipe, which is restored with --from the tape directory, device or file it is on), its counts and checksum.';
  static override examples = ['<%= config.bin %> catalog show 3f2a9c1e'];
  static override args = { id: Args.string({ description: 'Dump id (or a unique prefix of it).', required: true }) };
  static override flags = { catalog: catalogFlag };

  async run() {
    const { args, flags } = await this.parse(CatalogShow);
    const d = openCatalog(flags.catalog).get(args.id);
    const rows: Array<[string, string]> = [
      ['id', d.id],
      ['volume', `${d.volume.uuid}${d.volume.path ? ` (${d.volume.path})` : ''}`],
      ['level', String(d.level)],
      ['base', d.base?.name ?? '-'],
      ['top', d.top.name],
      ['snapshots', d.snapshots.join(' ')],
      ['image', d.expression],
      ['date', d.date],
      ['finished', d.finished],
      ['media', `${describePlace(d.media)}${d.media.tapes && d.media.tapes.length > 1 ? ` (tapes ${d.media.tapes.join(', ')})` : ''}${d.media.stream ? ', multiplexed with other dumps' : ''}`],
      ['blocks', String(d.blocks)],
      ['data bytes', String(d.dataBytes)],
      ['stream bytes', String(d.streamBytes)],
      ['sha256', d.sha256],
      ['encrypted', d.encrypted ? 'yes (restore and verify need its key)' : 'no'],
    ];
    for (const [k, v] of rows) this.say(`${k.padEnd(13)} ${v}`);
    return d;
  }
}
