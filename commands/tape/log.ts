import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { catalogFlag, openCatalog } from '../_cli/catalog-flag.js';
import { describeStatus, readTapeLog, summarizeLog } from '../../src/multiplex/index.js';
import { formatSize } from '../../src/core/size.js';

export default class TapeLog extends ImgstreamCommand {
  static override summary = 'Print the backup log of a multiplexed tape file.';
  static override description = `A multiplexed dump (dump VOL1 VOL2 ... --to tape:DIR --multiplex) writes the streams of several volumes interleaved into one tape file, and records every tar member it writes in a backup log: the source (volume path and uuid, stream id), the member's index in its stream, when it was written, how long the tape waited for data before it, its size and its position (byte offset of its tar header in the tape file, and that offset in records). The log is the last member of the tape file (tar --wildcards -xOf FILE 'imgstream/*/log' prints it too; bsdtar takes the pattern without --wildcards, which it does not know) and a copy is kept with the catalog (CATALOG.logs/ID.json); restore, verify and catalog rebuild use it to read one stream without reading the others.

Without flags, one line per member. --summary prints per source totals (members, parts, bytes, first and last write, status in this tape file: complete, continued on the next tape, later (nothing of it here yet: it starts or goes on in a later tape), earlier (nothing of it here: it ended on an earlier tape, printed as "earlier (ended on tape N)", N its tape in the set; such a source used to be listed "complete, 0 parts" as if it were here), aborted or failed) and how long the tape waited for data (idle time, and its share of the time the tape file was written). --json prints the log itself (header and entries), or the summary with --summary. When the tape file's own log is damaged or cut off, the catalog's copy is printed and a line on stderr says so ("tape:DIR#N: its backup log is damaged or missing; printing the catalog's copy"; with --json, "from" is "catalog" instead of "tape").`;
  static override examples = ['<%= config.bin %> tape log tape:/tapes/t1#3', '<%= config.bin %> tape log tape:/tapes/t1#3 --summary', '<%= config.bin %> tape log tape:/tapes/t1#3 --json | jq .log.header.sources'];
  static override args = { tape: Args.string({ description: 'The multiplexed tape file: tape:DIR#N (N = tape file number).', required: true }) };
  static override flags = {
    summary: Flags.boolean({ description: 'Per source totals and the tape\'s idle time instead of every member.' }),
    catalog: catalogFlag,
  };

  async run() {
    const { args, flags } = await this.parse(TapeLog);
    const r = readTapeLog(args.tape, openCatalog(flags.catalog));
    const h = r.log.header;
    // a note, not an error (the log is printed, exit 0): not "imgstream: ...", which is how errors read; --json says it in "from"
    if (r.from === 'catalog' && !this.jsonEnabled()) process.stderr.write(`${r.tapeFile}: its backup log is damaged or missing; printing the catalog's copy\n`);
    if (flags.summary) {
      const s = summarizeLog(r.log);
      this.say(`${r.tapeFile}: multiplexed dump ${s.id}, tape ${s.sequence}: ${s.members} members, ${formatSize(s.bytes)}, written ${s.started} .. ${s.finished} (${(s.elapsedMs / 1000).toFixed(1)} s)`);
      this.say(`tape idle (waiting for data): ${(s.idleMs / 1000).toFixed(2)} s, ${(100 * s.idleFraction).toFixed(1)}%`);
      for (const x of s.sources) {
        this.say(`  source ${x.source} ${x.volume.path}${x.volume.uuid ? ` (${x.volume.uuid.slice(0, 8)})` : ''}: ${describeStatus(x)}, stream ${x.streamId ?? '-'}, ${x.parts} part${x.parts === 1 ? '' : 's'}, ${formatSize(x.bytes)}${x.first ? `, ${x.first} .. ${x.last}` : ''}${x.error ? `: ${x.error}` : ''}`);
      }
      return { tapeFile: r.tapeFile, from: r.from, summary: s };
    }
    this.say(`# ${r.tapeFile}: multiplexed dump ${h.id}, tape ${h.sequence}, records of ${h.recordSize} bytes, written by ${h.host}`);
    for (const s of h.sources) this.say(`# source ${s.source}: ${s.volume.path}${s.volume.uuid ? ` (${s.volume.uuid})` : ''} stream ${s.streamId ?? '-'} ${describeStatus(s)}${s.error ? `: ${s.error}` : ''}`);
    this.say('# time                     source stream                                 member        size      offset    record  waited-ms');
    for (const e of r.log.entries) {
      const member = e.kind === 'part' ? `part-${String(e.seq).padStart(6, '0')}` : e.kind;
      this.say(`${e.time} ${String(e.source).padStart(6)} ${e.stream.padEnd(38)} ${member.padEnd(11)} ${String(e.size).padStart(10)} ${String(e.offset).padStart(11)} ${String(e.record).padStart(9)} ${String(e.waitedMs).padStart(10)}`);
    }
    return r;
  }
}
