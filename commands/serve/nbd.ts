import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import '../../src/mirror/served.js'; // mirror updates of the served volume (control ops)
import { unreplayedWrites } from '../../src/journal/idle-journal.js';
import '../../src/journal/journal-ops.js'; // seed and resync snapshots for imgstream protect (control ops)
import { parseListenAddress, serveNbd, type NbdListening } from '../../src/nbd/index.js';
import { formatSize, parseSize } from '../../src/core/size.js';
import { InvalidInputError, UsageError, stoppedBy } from '../../src/core/errors.js';
import { onStopSignals } from '../_cli/stop-signals.js';
import { OUTPUT_FAILED, stopOnOutputFailure } from '../../src/cli/output-failure.js';
import { tuneGcForStreaming } from '../../src/core/gc-tuning.js';
import { MAX_STRING_BYTES } from '../../src/format/nbd-protocol.js';

/** The least --journal-size taken: a few records of the largest common writes. */
const MIN_JOURNAL_SIZE = 64 << 10;

export default class ServeNbd extends ImgstreamCommand {
  static override summary = 'Serve a volume to NBD clients (qemu-img, qemu-io, nbdcopy, nbd-client).';
  static override description = `Offers the volume's active file system, or one snapshot, as an NBD export (fixed newstyle negotiation) on a TCP address or a Unix socket, to any number of connections at once. Writes go to free blocks (write-anywhere) and become part of the volume at a consistency point: FLUSH and FUA writes are answered only after one, one is taken every --cp-interval seconds when something changed, and one on SIGINT, SIGTERM or SIGHUP before the server exits (exit 0 on SIGINT and SIGTERM, the asked-for stop; 129 on SIGHUP, a lost terminal or session; a second signal ends it at once, losing writes acknowledged since the last CP unless --journal keeps them). A write to stdout that fails (its reader gone away, as with | head; a full disk) stops it the same way, and it exits 10 with one line ("writing the output: EPIPE: ... (so it stopped, as on SIGTERM)"). Trim and write-zeroes unmap whole blocks; unaligned reads and writes of any size are served (partial blocks are merged). A snapshot export, or --readonly, refuses writes with EPERM. When the server is ready it prints the URI clients connect to, and a summary when it stops (with --json, one JSON line each). There is no TLS and no authentication: listen on localhost or a Unix socket unless the network is trusted.

Clients that negotiate structured replies get unmapped ranges as holes (no data sent; DF is honoured) and may ask for block status, answered from the volume's metadata without reading data: base:allocation (holes and data, as nbdinfo --map and qemu-img map show), and imgstream:image:EXPR, a storage image in logical addresses: 1 for a block whose data is in the image, 0 for one mapped outside it, 2 for an unmapped block (reads as zeros). EXPR is evaluated when the client selects the context, and again before a block status request that finds the volume changed since (a connection kept open sees the volume as it is; after EXPR's snapshot is deleted its requests fail with EIO, and go on failing when a snapshot of the same name is taken again: the context holds the one it was selected with, by identity); a bad one is refused at negotiation with the reason (LIBNBD_DEBUG=1 shows it). Incremental backup with stock clients: keep a raw copy of snapshot S (volume export VOL@S), then for each extent of nbdinfo --json --map='imgstream:image:active - S' copy the 1s into it (qemu-img convert -n with driver=raw,offset=,size= on both sides) and zero the 2s (qemu-io -c "write -z OFF LEN"); the README has the script. A write whose data equals what the block holds keeps the block where it is (no allocation, no mark-on-allocate bit), so copying a mostly identical image over the disk leaves the next incremental at what differs. A client must complete the handshake within --handshake-timeout seconds; an option longer than 64 KiB drops it.

With --journal the server keeps the volume's write journal for continuous protection (imgstream protect ships it): every write, trim and write-zeroes is time-stamped at its reply and appended to VOL.journal/ before the reply, fsynced before every CP; after a crash the server cuts a torn last record off and replays the records its last CP lacks, and refuses a damaged journal (code 9). A journal that cannot be written (disk full) fails those writes with EIO, and every later write and flush until the server is restarted. Past --journal-size of records no destination holds yet, the journal overflows into a list of changed blocks and the next protect transfer resyncs those.

With --snapshot (and no --listen or --socket) on a volume another imgstream process serves, that server adds a read-only export of the snapshot beside its own (named after the snapshot, or --export-name) and this command prints its URI; the snapshot stays pinned and served until this command stops. A shadow snapshot served so reads exactly until the server's writes take one of its blocks, and from then on its reads and block status get EIO (the server's log says so once), never other data.

While it serves, other imgstream commands on the same volume go through the server instead of failing with "busy": snapshot create, delete, rename and list, image, volume info, volume check, volume export and dump. They reach it on a control socket next to the volume's lock file (only the same user may connect), and the server runs each request between two client requests, so a snapshot is the state of a consistency point taken then: it holds every write received before it (a write the client has flushed is always in it). Dumps and exports read snapshots straight from the volume, and the snapshots they read cannot be deleted or renamed until they finish (or are killed). volume import and restore still refuse a served volume: write through the export, or stop the server first.`;
  static override examples = [
    '<%= config.bin %> serve nbd vm.vol --socket /tmp/vm.sock',
    'qemu-img convert -n -O raw disk.qcow2 "nbd+unix:///?socket=/tmp/vm.sock"',
    '<%= config.bin %> serve nbd vm.vol --listen 0.0.0.0:10809 --export-name vm',
    '<%= config.bin %> serve nbd vm.vol --snapshot monday --listen 127.0.0.1:10810',
    'nbdcopy nbd://127.0.0.1:10810 monday.raw',
    'nbdinfo --map=\'imgstream:image:active - monday\' "nbd+unix:///?socket=/tmp/vm.sock"',
    'qemu-img map --output=json "nbd+unix:///?socket=/tmp/vm.sock"',
    '<%= config.bin %> serve nbd vm.vol --snapshot monday     # beside the served vm.vol: nbd+unix:///monday?socket=/tmp/vm.sock',
    '<%= config.bin %> snapshot create vm.vol before-upgrade',
    '<%= config.bin %> serve nbd vm.vol --socket /run/vm.sock --journal --journal-size 4G     # then: imgstream protect vm.vol --to DEST',
  ];
  static override args = { volume: Args.string({ description: 'Volume file or block device.', required: true }) };
  static override flags = {
    listen: Flags.string({ helpValue: 'HOST:PORT', char: 'l', description: 'TCP address to listen on (port 0: any free port; HOST alone: the NBD port 10809; :PORT alone: 127.0.0.1). Default 127.0.0.1:10809.' }),
    socket: Flags.string({ helpValue: 'PATH', char: 's', description: 'Unix socket to listen on instead of TCP (a path of at most 107 bytes, in an existing directory; the URI printed names it by its absolute path).' }),
    snapshot: Flags.string({ helpValue: 'NAME', description: 'Serve this snapshot, read-only.' }),
    readonly: Flags.boolean({ char: 'r', description: 'Refuse writes (EPERM).' }),
    'cp-interval': Flags.string({ helpValue: 'SECONDS', description: 'Seconds between consistency points while writes arrive (at most 86400); 0: only on flush and shutdown.', default: '5' }),
    'export-name': Flags.string({ helpValue: 'NAME', description: 'Name of the export (at most 4096 bytes, the NBD limit); clients asking for the empty name get it too. A snapshot served beside a served volume is named after the snapshot by default.' }),
    journal: Flags.boolean({ description: 'Keep the volume\'s write journal (VOL.journal/): every write, trim and write-zeroes, time-stamped, for imgstream protect to ship. Fsynced before every CP (so before FLUSH and FUA replies); replayed onto the volume after a crash.' }),
    'journal-size': Flags.string({ helpValue: 'SIZE', description: 'With --journal: bytes of records not yet shipped kept before the journal overflows into a list of changed blocks (the next protect transfer is then a resync of those blocks); 64K or more [default: 1G].' }),
    'handshake-timeout': Flags.string({ helpValue: 'SECONDS', description: 'Seconds a client gets to complete the NBD handshake before it is dropped (at most 86400); 0: no limit.', default: '10' }),
  };

  static readonly MAX_SECONDS = 86_400;

  async run() {
    const { args, flags } = await this.parse(ServeNbd);
    tuneGcForStreaming(); // a long-running server with a small heap (see gc-tuning.ts)
    if (flags.socket !== undefined && flags.listen !== undefined) throw new UsageError('--listen and --socket cannot both be given: the server listens on TCP or on a Unix socket', 'give one of them');
    const interval = Number(flags['cp-interval']);
    if (!/^\d+(\.\d+)?$/.test(flags['cp-interval'].trim()) || !Number.isFinite(interval)) {
      throw new InvalidInputError(`invalid --cp-interval "${flags['cp-interval']}"`, 'use a number of seconds, e.g. 5 or 0.5');
    }
    const handshake = Number(flags['handshake-timeout']);
    if (!/^\d+(\.\d+)?$/.test(flags['handshake-timeout'].trim()) || !Number.isFinite(handshake)) {
      throw new InvalidInputError(`invalid --handshake-timeout "${flags['handshake-timeout']}"`, 'use a number of seconds, e.g. 10, or 0 for no limit');
    }
    // timers past 2^31 ms (24.8 days) fire at once in Node: a day is far beyond any use of either
    for (const [flag, v] of [['--cp-interval', interval], ['--handshake-timeout', handshake]] as const) {
      if (v > ServeNbd.MAX_SECONDS) throw new InvalidInputError(`${flag} ${v} is more than a day (at most ${ServeNbd.MAX_SECONDS} seconds)`, flag === '--cp-interval' ? 'use 0 for CPs only on flush and shutdown' : 'use 0 for no limit');
    }
    const name = flags['export-name'];
    if (name !== undefined && Buffer.byteLength(name) > MAX_STRING_BYTES) throw new InvalidInputError(`--export-name is ${Buffer.byteLength(name)} bytes, more than the ${MAX_STRING_BYTES} an NBD export name may have`, 'choose a shorter name');
    if (flags['journal-size'] !== undefined && flags.journal !== true) throw new UsageError('--journal-size needs --journal');
    const journalSize = flags['journal-size'] ?? '1G';
    const journalLimit = parseSize(journalSize);
    // (below that, every few writes overflow it: protection would be one resync after another)
    if (journalLimit < MIN_JOURNAL_SIZE) throw new InvalidInputError(`--journal-size ${journalSize} is below the least a journal needs (64K)`, 'give 64K or more; the default is 1G');
    const listen = flags.socket !== undefined ? { socket: flags.socket } : parseListenAddress(flags.listen ?? '127.0.0.1:10809');
    // SIGINT and SIGTERM are the asked-for stop (exit 0); SIGHUP (its terminal or ssh session
    // went away) stops it the same way, with its last CP, and exits 129. A second signal
    // ends it at once, as kill -9 would: writes acknowledged since the last CP are then
    // lost unless --journal keeps them.
    const stop = new AbortController();
    let stoppedBySignal: NodeJS.Signals | undefined;
    const off = onStopSignals((sig) => {
      stoppedBySignal = sig;
      stop.abort();
    });
    // its stdout's reader gone away, or its disk full: stopped as by SIGTERM (its last CP), then exit 10 (main)
    const offOutput = stopOnOutputFailure(() => stop.abort(OUTPUT_FAILED));
    // read-only, its active disk: a journal's writes a killed server acknowledged are not served until something replays them (said)
    const unreplayed = flags.readonly === true && flags.snapshot === undefined ? unreplayedWrites(args.volume) : 0;
    try {
      const result = await serveNbd(
        { volume: args.volume, listen, snapshot: flags.snapshot, readOnly: flags.readonly, cpIntervalMs: interval * 1000, exportName: flags['export-name'], handshakeMs: handshake * 1000, listenChosen: flags.socket !== undefined || flags.listen !== undefined, journal: flags.journal === true ? { limitBytes: journalLimit } : undefined },
        {
          signal: stop.signal,
          listening: (info) => {
            this.ready(info);
            if (unreplayed > 0 && info.servedBy === undefined) process.stderr.write(`imgstream: ${args.volume}: its write journal holds ${unreplayed} writes a server acknowledged after its last CP and did not commit (it was killed), not served read-only: serve it with --journal, or take a snapshot, to replay them\n`);
          },
          problem: (message) => process.stderr.write(`imgstream: ${message}\n`),
        },
      );
      if (result.servedBy !== undefined) this.say(`stopped serving snapshot ${flags.snapshot} beside ${args.volume}: imgstream process ${result.servedBy} no longer offers it`);
      else this.say(`stopped: ${result.connections} connections, ${formatSize(result.bytesRead)} read, ${formatSize(result.bytesWritten)} written, ${result.consistencyPoints} CPs (CP ${result.generation})`);
      if (stoppedBySignal === 'SIGHUP') throw stoppedBy('SIGHUP', 'stopped by SIGHUP (its terminal or session went away) after its last CP: every acknowledged write is in the volume');
      return result;
    } finally {
      off();
      offOutput();
    }
  }

  /** With --json the summary at stop is one line too, like the "listening" line: the output is JSON lines. */
  override logJson(json: unknown): void {
    process.stdout.write(`${JSON.stringify(json)}\n`);
  }

  /** The line scripts wait for: clients may connect once it is printed. */
  private ready(info: NbdListening): void {
    if (this.jsonEnabled()) {
      process.stdout.write(`${JSON.stringify({ listening: info })}\n`);
      return;
    }
    const what = info.snapshot !== null ? `snapshot ${info.snapshot} of ${info.volume}` : info.volume;
    const by = info.servedBy !== undefined ? `, beside the volume, by imgstream process ${info.servedBy}` : '';
    this.say(`serving ${what} (${formatSize(info.size)}, ${info.readOnly ? 'read-only' : 'read-write'}${by}) at ${info.uri}`);
    const j = info.journal;
    if (j) {
      const recovered = j.replayed > 0 || j.tornBytes > 0 ? `; after a crash: ${j.replayed} records replayed onto the volume${j.tornBytes > 0 ? `, a torn last record of ${j.tornBytes} bytes cut off` : ''}` : '';
      this.say(`journaling to ${j.dir} (record ${j.lastSeq}${j.overflowed ? ', overflowed: changed blocks tracked until protect resyncs' : ''})${recovered}`);
    }
  }
}
