// Bad input through the CLI: every case must exit with its documented code, print
// exactly one line on stderr ("imgstream: ...", no stack trace), print nothing else (or,
// with --json, one JSON object naming the error), and change nothing on disk: no file in
// the test directory (volumes and images) is written to or has its metadata changed (its
// inode, size, mtime and ctime stay: fingerprintTree), no file appears or disappears, and
// no lock file is left behind. The cases run the executable's main() from the built bundle
// in this process (bundled-cli.ts: the same code as the executable, without starting a
// process each time); those with a --json variant (one or more per error code) also run it
// as a real process, which must print the same, byte for byte, and exit the same; cases
// that read stdin run as processes only.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES, type ErrorCode } from '../../src/core/errors.js';
import { PLANE_ACTIVE, VolumeLayout } from '../../src/volume/index.js';
import { cliOk, fingerprintTree, runCli, sha256, sha256File, stderrLines, writeImage, type CliResult } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { inProcess, inProcessJson, inProcessOk, setupOk } from '../support/in-process.js';
import { runBundled } from '../support/bundled-cli.js';

// The exit codes as documented (README / --help); checked against src/core/errors.ts below.
const DOCUMENTED: Record<ErrorCode, number> = {
  usage: 2,
  'not-found': 3,
  'invalid-input': 4,
  'not-a-volume': 5,
  exists: 6,
  busy: 7,
  'volume-full': 8,
  corrupt: 9,
  io: 10,
  auth: 11,
  network: 12,
  hangup: 129,
  interrupted: 130,
  terminated: 143,
};

const BS = 4096;
const root = tempDir('imgstream-cli-bad-');
const dir = path.join(root, 'work'); // everything in here is hashed around every case
const lockDir = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: lockDir, IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (name: string) => path.join(dir, name);
const cli = (args: string[], input?: Buffer) => runCli(args, { env, input, timeoutMs: 30_000 });

/** sha256 of what `volume export SPEC` writes (in this process, to a file outside the hashed directory). */
async function exportSha(spec: string): Promise<string> {
  const out = path.join(root, `export-${process.pid}.raw`);
  try {
    await inProcessOk(['volume', 'export', spec, '--to', out], { env });
    return sha256File(out);
  } finally {
    fs.rmSync(out, { force: true });
  }
}

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  fs.mkdirSync(dir, { recursive: true });
  // v.vol: 1 MiB disk with two snapshots
  await setupOk(['volume', 'create', at('v.vol'), '--size', '1M', '--max-snapshots', '8'], { env });
  const img = writeImage(at('a.img'), 256, BS, 1);
  await setupOk(['volume', 'import', at('v.vol'), '--from', at('a.img')], { env });
  await setupOk(['snapshot', 'create', at('v.vol'), 's1'], { env });
  mutate(img, BS, 40, 2);
  fs.writeFileSync(at('b.img'), img);
  await setupOk(['volume', 'import', at('v.vol'), '--from', at('b.img')], { env });
  await setupOk(['snapshot', 'create', at('v.vol'), 's2'], { env });
  writeImage(at('big.img'), 512, BS, 3); // 2 MiB: larger than the 1 MiB disk
  writeImage(at('random.bin'), 64, BS, 4, 0); // random bytes, not a volume
  fs.writeFileSync(at('empty.bin'), '');
  fs.mkdirSync(at('adir'));
  fs.writeFileSync(at('adir/inside.txt'), 'not a volume\n');
  fs.writeFileSync(at('out.raw'), 'an existing export target\n');
  // full.vol: a volume barely larger than its disk, filled and pinned by a snapshot
  await setupOk(['volume', 'create', at('full.vol'), '--size', '1M', '--volume-size', '1200K', '--max-snapshots', '4'], { env });
  writeImage(at('full1.img'), 256, BS, 11, 0);
  writeImage(at('full2.img'), 256, BS, 12, 0);
  await setupOk(['volume', 'import', at('full.vol'), '--from', at('full1.img')], { env });
  await setupOk(['snapshot', 'create', at('full.vol'), 'full'], { env });
  // v.l0: a level 0 of v.vol@s1, to restore from
  cliOk(['dump', at('v.vol'), '--level', '0', '--snapshot', 's1', '--to', at('v.l0'), '--catalog', at('dump.catalog')], { env });
  // slots.vol: every snapshot slot in use (4 of 4)
  await setupOk(['volume', 'create', at('slots.vol'), '--size', '1M', '--max-snapshots', '4'], { env });
  for (const s of ['s1', 's2', 's3', 's4']) await setupOk(['snapshot', 'create', at('slots.vol'), s], { env });
  // truncated copies of v.vol: cut in the middle, and cut inside the first root record
  const vol = fs.readFileSync(at('v.vol'));
  fs.writeFileSync(at('trunc.vol'), vol.subarray(0, Math.floor(vol.length / 2)));
  fs.writeFileSync(at('tiny.vol'), vol.subarray(0, 100));
  // plane.vol: v.vol with the first block of its active plane zeroed: it opens, but every
  // block in use would look free, which check must report
  const { nblocks, maxSnapshots } = await inProcessJson<{ nblocks: number; maxSnapshots: number }>(['volume', 'info', at('v.vol')], { env });
  const planeAt = new VolumeLayout(BS, nblocks, maxSnapshots).planeBlock(PLANE_ACTIVE, 0) * BS;
  const damaged = Buffer.from(vol);
  expect(damaged.subarray(planeAt, planeAt + BS).some((b) => b !== 0)).toBe(true);
  damaged.fill(0, planeAt, planeAt + BS);
  fs.writeFileSync(at('plane.vol'), damaged);
  // m.vol: a mirror of v.vol (read-only to everything but its mirror)
  cliOk(['mirror', 'update', at('v.vol'), '--to', at('m.vol')], { env });
  // catalogs a dump must refuse before it takes a snapshot or writes a byte
  fs.writeFileSync(at('bad.catalog'), '{"format": "imgstream-catalog", "version": 1, "dumps": [{"id'); // cut short
  fs.writeFileSync(at('passwd.copy'), 'root:x:0:0:root:/root:/bin/bash\n'); // a --catalog typo: some other file
  fs.writeFileSync(at('hello.txt'), 'hello\n'); // shorter than a stream's preamble
  fs.symlinkSync(at('v.vol'), at('v-link.vol'));
  fs.writeFileSync(at('v99.catalog'), JSON.stringify({ format: 'imgstream-catalog', version: 99, dumps: [] }));
  fs.mkdirSync(at('v2.cdp'));
  fs.writeFileSync(at('v2.cdp/protect.json'), JSON.stringify({ format: 'imgstream-protect-destination', version: 2 }));
  fs.writeFileSync(at('malformed.catalog'), JSON.stringify({ format: 'imgstream-catalog', version: 1, dumps: [{ id: 5 }] }));
}, 60_000);

interface Case {
  what: string;
  args: string[];
  /** Expected error code (either of several when the product may reasonably say either). */
  code: ErrorCode | ErrorCode[];
  input?: () => Buffer;
  /** The message must name what is wrong. */
  mentions?: RegExp;
  /** Run a --json variant too (one case per error code is enough); 'only': the args have it already. */
  json?: boolean | 'only';
  /** The command prints a report on stdout before failing (check lists the problems it found). */
  report?: boolean;
}

const v = () => at('v.vol');
const name65 = 'a'.repeat(65);
const cases: Case[] = [
  // missing volume or input
  { what: 'info of a missing volume', args: ['volume', 'info', at('nope.vol')], code: 'not-found', mentions: /nope\.vol/, json: true },
  { what: 'check of a missing volume', args: ['volume', 'check', at('nope.vol')], code: 'not-found', mentions: /nope\.vol/ },
  // demo --dir where no directory can be made (Node's recursive mkdir spun forever under /proc)
  { what: 'demo --dir on a file', args: ['demo', '--dir', at('a.img')], code: 'invalid-input', mentions: /a\.img: a part of the path is not a directory/ },
  { what: 'demo --dir under a file', args: ['demo', '--dir', at('a.img/sub')], code: 'invalid-input', mentions: /a\.img\/sub/ },
  { what: 'demo --dir under /proc', args: ['demo', '--dir', '/proc/imgstream-demo'], code: 'not-found', mentions: /\/proc\/imgstream-demo/ },
  { what: 'restore --as-of from a destination under a file', args: ['restore', '--to', at('asof-new.vol'), '--as-of', 'latest', '--from', at('a.img/x')], code: 'not-found', mentions: /a\.img\/x: no such protection destination/ },
  { what: 'import into a missing volume', args: ['volume', 'import', at('nope.vol'), '--from', at('a.img')], code: 'not-found', mentions: /nope\.vol/ },
  { what: 'export of a missing volume', args: ['volume', 'export', at('nope.vol'), '--to', at('new.raw')], code: 'not-found', mentions: /nope\.vol/ },
  { what: 'snapshot create on a missing volume', args: ['snapshot', 'create', at('nope.vol'), 'x'], code: 'not-found', mentions: /nope\.vol/ },
  { what: 'snapshot list of a missing volume', args: ['snapshot', 'list', at('nope.vol')], code: 'not-found', mentions: /nope\.vol/ },
  { what: 'import from a missing image', args: ['volume', 'import', v(), '--from', at('nope.img')], code: 'not-found', mentions: /nope\.img/, json: true },
  // not a volume
  ...['random.bin', 'empty.bin', 'adir'].map((f): Case => ({ what: `info of ${f}`, args: ['volume', 'info', at(f)], code: 'not-a-volume', mentions: new RegExp(f.replace('.', '\\.')) })),
  ...['random.bin', 'empty.bin', 'adir'].map((f): Case => ({ what: `import into ${f}`, args: ['volume', 'import', at(f), '--from', at('a.img')], code: 'not-a-volume', mentions: new RegExp(f.replace('.', '\\.')) })),
  { what: 'check of random bytes', args: ['volume', 'check', at('random.bin')], code: 'not-a-volume' },
  { what: 'snapshot create on a directory', args: ['snapshot', 'create', at('adir'), 'x'], code: 'not-a-volume' },
  { what: 'export of random bytes', args: ['volume', 'export', at('random.bin'), '--to', at('new.raw')], code: 'not-a-volume', json: true },
  // invalid block size
  ...['3000', '2M', '0', 'abc'].map((b): Case => ({ what: `block size ${b}`, args: ['volume', 'create', at('new.vol'), '--size', '1M', '--block-size', b], code: 'invalid-input', mentions: /block size/, json: b === 'abc' })),
  // invalid size
  ...['abc', '-5', '0', '5000'].map((s): Case => ({ what: `size ${s}`, args: ['volume', 'create', at('new.vol'), `--size=${s}`], code: 'invalid-input', mentions: /size/ })),
  { what: 'size not a multiple of a 64K block size', args: ['volume', 'create', at('new.vol'), '--size', '96K', '--block-size', '64K'], code: 'invalid-input', mentions: /size/ },
  { what: 'volume size abc', args: ['volume', 'create', at('new.vol'), '--size', '1M', '--volume-size', 'abc'], code: 'invalid-input', mentions: /volume size/ },
  { what: 'volume size too small for its metadata', args: ['volume', 'create', at('new.vol'), '--size', '1M', '--volume-size', '8K'], code: 'invalid-input' },
  // out of range either way, one code (0 was a usage error, exit 2; 100000 invalid input, exit 4)
  ...['0', '-1', '100000'].map((n): Case => ({ what: `max snapshots ${n}`, args: ['volume', 'create', at('new.vol'), '--size', '1M', `--max-snapshots=${n}`], code: 'invalid-input', mentions: new RegExp(`invalid snapshot limit ${n} \\(use 1 to 65535\\)`) })),
  // an image larger than the logical disk
  { what: 'import of a larger image file', args: ['volume', 'import', v(), '--from', at('big.img')], code: 'invalid-input', mentions: /larger than the logical disk/ },
  { what: 'import of a larger image from stdin', args: ['volume', 'import', v(), '--from', '-'], input: () => fs.readFileSync(at('big.img')), code: 'invalid-input', mentions: /larger than the logical disk/, json: true },
  { what: 'import of one byte too many from stdin', args: ['volume', 'import', v(), '--from', '-'], input: () => Buffer.concat([fs.readFileSync(at('a.img')), Buffer.from([7])]), code: 'invalid-input', mentions: /larger/ },
  // unknown snapshot
  { what: 'delete of an unknown snapshot', args: ['snapshot', 'delete', v(), 'nope'], code: 'not-found', mentions: /nope/ },
  { what: 'rename of an unknown snapshot', args: ['snapshot', 'rename', v(), 'nope', 'other'], code: 'not-found', mentions: /no snapshot named "nope" \(list them with: imgstream snapshot list \S+v\.vol\)$/ },
  { what: 'shadow of an unknown snapshot', args: ['snapshot', 'shadow', v(), 'nope'], code: 'not-found', mentions: /no snapshot named "nope" \(list them with: imgstream snapshot list \S+v\.vol\)$/, json: true },
  { what: 'snapshot shadow without a name', args: ['snapshot', 'shadow', v()], code: 'usage', mentions: /missing argument NAME/ },
  { what: 'export of an unknown snapshot', args: ['volume', 'export', `${v()}@nope`, '--to', at('new.raw')], code: 'not-found', mentions: /nope/, json: true },
  { what: 'export of VOL@ (no snapshot name)', args: ['volume', 'export', `${v()}@`, '--to', at('new.raw')], code: 'invalid-input', mentions: /v\.vol@: no snapshot name after "@" \(give \S+v\.vol@SNAPSHOT for a snapshot, or \S+v\.vol alone for the active file system\)$/ },
  // duplicate snapshot
  { what: 'create of an existing snapshot name', args: ['snapshot', 'create', v(), 's1'], code: 'exists', mentions: /s1/, json: true },
  { what: 'rename onto an existing snapshot name', args: ['snapshot', 'rename', v(), 's1', 's2'], code: 'exists', mentions: /s2/ },
  // invalid snapshot names
  ...['a/b', '', 'active', name65, '.x', 'mirror.0ec173d6.2', 'Mirror.x'].map((n): Case => ({ what: `snapshot create "${n.length > 20 ? `${n.length} chars` : n}"`, args: ['snapshot', 'create', v(), n], code: 'invalid-input', mentions: /snapshot name/ })),
  { what: 'snapshot create "-x" (after --)', args: ['snapshot', 'create', v(), '--', '-x'], code: 'invalid-input', mentions: /snapshot name "-x"/, json: true },
  { what: 'snapshot create -x (parsed as a flag)', args: ['snapshot', 'create', v(), '-x'], code: 'usage' },
  // a master replicas synchronise to cannot be one whose blocks the allocator may take
  { what: 'snapshot create --shadow --master', args: ['snapshot', 'create', v(), 'sm', '--shadow', '--master'], code: 'usage', mentions: /^imgstream: --shadow cannot be combined with --master \(see: imgstream snapshot create --help\)$/ },
  ...['a/b', 'active', 'mirror.0ec173d6.2'].map((n): Case => ({ what: `snapshot rename to "${n.length > 20 ? `${n.length} chars` : n}"`, args: ['snapshot', 'rename', v(), 's1', n], code: 'invalid-input', mentions: /snapshot name/ })),
  // create over an existing file
  { what: 'create over an existing volume', args: ['volume', 'create', v(), '--size', '1M'], code: 'exists', mentions: /v\.vol/ },
  { what: 'create over an existing image', args: ['volume', 'create', at('a.img'), '--size', '1M'], code: 'exists', mentions: /a\.img/ },
  { what: 'create over an existing volume with --force', args: ['volume', 'create', v(), '--size', '1M', '--force'], code: 'exists', mentions: /v\.vol/ },
  // export onto an existing file
  { what: 'export onto an existing file', args: ['volume', 'export', v(), '--to', at('out.raw')], code: 'exists', mentions: /out\.raw/, json: true },
  { what: 'export of a snapshot onto an existing file', args: ['volume', 'export', `${v()}@s1`, '--to', at('a.img')], code: 'exists', mentions: /a\.img/ },
  { what: 'export onto a directory', args: ['volume', 'export', v(), '--to', at('adir')], code: 'invalid-input', mentions: /adir/ },
  // a full volume
  { what: 'import of a different image into a full volume', args: ['volume', 'import', at('full.vol'), '--from', at('full2.img')], code: 'volume-full', mentions: /full/, json: true },
  // full of snapshots: volume-full too, naming the command that frees a slot
  { what: 'snapshot create with every slot in use', args: ['snapshot', 'create', at('slots.vol'), 's5'], code: 'volume-full', mentions: /all 4 snapshot slots are in use \(free one: imgstream snapshot delete \S*slots\.vol NAME; imgstream snapshot list \S*slots\.vol lists them\)$/ },
  { what: 'dump taking its snapshot with every slot in use', args: ['dump', at('slots.vol'), '--level', '0', '--to', at('slots.l0'), '--catalog', at('slots.catalog')], code: 'volume-full', mentions: /all 4 snapshot slots are in use .*imgstream snapshot delete/ },
  // truncated volumes
  { what: 'check of trunc.vol', args: ['volume', 'check', at('trunc.vol')], code: ['corrupt', 'not-a-volume'] },
  { what: 'info of tiny.vol', args: ['volume', 'info', at('tiny.vol')], code: ['corrupt', 'not-a-volume'] },
  ...['trunc.vol', 'tiny.vol'].map((f): Case => ({ what: `import into ${f}`, args: ['volume', 'import', at(f), '--from', at('a.img')], code: ['corrupt', 'not-a-volume'] })),
  { what: 'export of trunc.vol', args: ['volume', 'export', at('trunc.vol'), '--to', at('new.raw')], code: ['corrupt', 'not-a-volume'], json: true },
  { what: 'snapshot delete on trunc.vol', args: ['snapshot', 'delete', at('trunc.vol'), 's1'], code: ['corrupt', 'not-a-volume'] },
  { what: 'snapshot shadow on trunc.vol', args: ['snapshot', 'shadow', at('trunc.vol'), 's1'], code: ['corrupt', 'not-a-volume'] },
  // a volume that opens but whose planes disagree with its maps
  { what: 'check of a volume with a zeroed active plane', args: ['volume', 'check', at('plane.vol')], code: 'corrupt', mentions: /plane\.vol/, json: true, report: true },
  // mirrors
  { what: 'mirror update of a missing volume', args: ['mirror', 'update', at('nope.vol'), '--to', at('m2.vol')], code: 'not-found', mentions: /nope\.vol/, json: true },
  { what: 'mirror update to an unknown scheme', args: ['mirror', 'update', v(), '--to', 'ftp://host/x'], code: 'invalid-input', mentions: /ftp:/ },
  { what: 'mirror update onto a file that is not a volume', args: ['mirror', 'update', v(), '--to', at('a.img')], code: 'not-a-volume', mentions: /a\.img: not an imgstream volume, so not a mirror \(a mirror update creates its destination/ },
  { what: 'mirror update onto the source volume itself', args: ['mirror', 'update', v(), '--to', v()], code: 'invalid-input', mentions: /is the source volume .*v\.vol itself/, json: true },
  { what: 'replicate pull into the source volume itself', args: ['replicate', 'pull', v(), '--from', v()], code: 'invalid-input', mentions: /v\.vol: is the source volume .*v\.vol itself/ },
  { what: 'a size past 2^53 bytes', args: ['volume', 'create', at('huge.vol'), '--size', '8P'], code: 'invalid-input', mentions: /invalid size "8P": at most 2\^53 - 1 bytes \(just under 8 PiB\)/ },
  { what: 'mirror update onto a link to the source volume', args: ['mirror', 'update', v(), '--to', at('v-link.vol')], code: 'invalid-input', mentions: /v-link\.vol: is the source volume/ },
  { what: 'mirror update onto a volume that is not a mirror', args: ['mirror', 'update', v(), '--to', at('full.vol')], code: 'invalid-input', mentions: /not a mirror/, json: true },
  { what: 'mirror update of a mirror onto its own source', args: ['mirror', 'update', at('m.vol'), '--to', v()], code: 'invalid-input', mentions: /not a mirror/ },
  { what: 'snapshot create on a mirror', args: ['snapshot', 'create', at('m.vol'), 'x'], code: 'invalid-input', mentions: /m\.vol: is a mirror destination, written only by its mirror \(read it, or make it writable with: imgstream mirror break .*m\.vol\)/ },
  { what: 'import into a mirror', args: ['volume', 'import', at('m.vol'), '--from', at('a.img')], code: 'invalid-input', mentions: /mirror/ },
  { what: 'mirror break of a volume that is not a mirror', args: ['mirror', 'break', v()], code: 'invalid-input', mentions: /not a mirror destination \(give a mirror destination: imgstream mirror status SOURCE lists them\)/ },
  // a mirror's hint, never "create one with: imgstream volume create"
  { what: 'mirror break of a missing volume', args: ['mirror', 'break', at('nope.vol')], code: 'not-found', mentions: /nope\.vol: no mirror there to break \(give a mirror destination: imgstream mirror status SOURCE lists them\)/ },
  { what: 'mirror break of a file that is not a volume', args: ['mirror', 'break', at('a.img')], code: 'not-a-volume', mentions: /a\.img: not an imgstream volume, so not a mirror \(give a mirror destination: imgstream mirror status SOURCE lists them\)/ },
  // a mistyped URL is never taken as a local path (it would write ./peer:/x and exit 0)
  { what: 'protect --to a mistyped peer URL', args: ['protect', v(), '--to', 'peer:/vm1', '--once'], code: 'invalid-input', mentions: /peer:\/vm1: not a path, and not a URL imgstream knows; give a directory or peer:\/\/HOST:PORT\/NAME/ },
  { what: 'dump --to an http URL', args: ['dump', v(), '--level', '0', '--to', 'http://backup.example/vm1'], code: 'invalid-input', mentions: /http:\/\/backup\.example\/vm1: not a path, and not a URL imgstream knows/ },
  { what: 'restore --to a file that is not a volume', args: ['restore', '--from', at('v.l0'), '--to', at('a.img')], code: 'not-a-volume', mentions: /a\.img: not an imgstream volume: it holds something else \(restore into an imgstream volume, or give --to a path that does not exist yet: restore creates the volume\)$/ },
  { what: 'restore --from a mistyped s3 URL', args: ['restore', '--from', 's3:/bucket/x', '--to', at('new.vol')], code: 'invalid-input', mentions: /s3:\/bucket\/x: not a path/ },
  { what: 'mirror update --to a mistyped peer URL with the peer flags', args: ['mirror', 'update', v(), '--to', 'peer:/host:1/m', '--token-file', at('a.img'), '--plain'], code: 'invalid-input', mentions: /peer:\/host:1\/m: not a path, and not a URL imgstream knows; give peer:\/\/HOST:PORT\/NAME, or a local path/ },
  { what: 'protect --to a mistyped peer URL with the peer flags', args: ['protect', v(), '--to', 'peer:/host:1/m', '--token-file', at('a.img'), '--once'], code: 'invalid-input', mentions: /peer:\/host:1\/m: not a path, and not a URL imgstream knows/ },
  { what: 'mirror update --to a mistyped peer URL', args: ['mirror', 'update', v(), '--to', 'peer:/m'], code: 'invalid-input', mentions: /peer:\/m: not a path, and not a URL imgstream knows; give a volume path or peer/ },
  { what: 'mirror start with --every and --cron', args: ['mirror', 'start', v(), '--to', at('m.vol'), '--every', '5m', '--cron', '* * * * *'], code: 'usage' },
  { what: 'mirror start without a schedule', args: ['mirror', 'start', v(), '--to', at('m.vol')], code: 'usage', mentions: /--every|--cron/ },
  // a malformed value is invalid-input (4), as every other malformed value is
  { what: 'mirror start --every soon', args: ['mirror', 'start', v(), '--to', at('m.vol'), '--every', 'soon'], code: 'invalid-input', mentions: /^imgstream: invalid --every "soon" \(use a duration of at least 1s, e\.g\. 30s, 5m, 2h, 1d\)$/, json: true },
  { what: 'mirror update --compress gzip', args: ['mirror', 'update', v(), '--to', at('m.vol'), '--compress', 'gzip'], code: 'invalid-input', mentions: /^imgstream: --compress gzip: expected one of zstd, none/ },
  { what: 'mirror abandon of a missing volume', args: ['mirror', 'abandon', at('nope.vol'), '--to', at('m.vol')], code: 'not-found', mentions: /nope\.vol/ },
  // --cron: the value and the field named in the project's words (never croner's "CronPattern: Invalid value for minute"), what is accepted with an example
  { what: 'mirror start --cron with a bad field', args: ['mirror', 'start', v(), '--to', at('m.vol'), '--cron', '61 * * * *'], code: 'invalid-input', mentions: /^imgstream: invalid --cron "61 \* \* \* \*": minute field "61" is not valid: it takes 0-59 \(use five fields, minute hour day-of-month month day-of-week, .*e\.g\. "\*\/15 8-18 \* \* 1-5"\)$/ },
  { what: 'mirror start --cron with month 13', args: ['mirror', 'start', v(), '--to', at('m.vol'), '--cron', '0 3 * 13 *'], code: 'invalid-input', mentions: /^imgstream: invalid --cron "0 3 \* 13 \*": month field "13" is not valid: it takes 1-12 or JAN-DEC \(use five fields/ },
  { what: 'mirror start --cron of two words', args: ['mirror', 'start', v(), '--to', at('m.vol'), '--cron', 'every hour'], code: 'invalid-input', mentions: /^imgstream: invalid --cron "every hour": 2 fields, not five \(use five fields/, json: true },
  { what: 'mirror start --cron that never runs', args: ['mirror', 'start', v(), '--to', at('m.vol'), '--cron', '0 0 30 2 *'], code: 'invalid-input', mentions: /^imgstream: invalid --cron "0 0 30 2 \*": it never runs \(no such date\) \(use five fields/ },
  // refused before the loop announces itself on stderr: the error is the one line
  { what: 'mirror start --limit-rate abc', args: ['mirror', 'start', v(), '--to', at('m.vol'), '--every', '1h', '--limit-rate', 'abc'], code: 'invalid-input', mentions: /^imgstream: invalid rate "abc"/ },
  { what: 'mirror update --limit-rate abc', args: ['mirror', 'update', v(), '--to', at('m.vol'), '--limit-rate', 'abc'], code: 'invalid-input', mentions: /rate/ },
  { what: 'mirror status of a missing volume', args: ['mirror', 'status', at('nope.vol')], code: 'not-found', mentions: /nope\.vol/ },
  { what: 'replicate pull from a volume without master snapshots', args: ['replicate', 'pull', at('r.vol'), '--from', v()], code: 'invalid-input', mentions: /master/, json: true },
  // serve nbd: values that would be cut short or overflow a timer, refused before anything is opened
  { what: 'serve nbd --listen with an empty address', args: ['serve', 'nbd', v(), '--listen', ''], code: 'invalid-input', mentions: /invalid listen address ""/ },
  { what: 'serve nbd --socket with an empty path', args: ['serve', 'nbd', v(), '--socket', ''], code: 'invalid-input', mentions: /--socket path is empty/ },
  { what: 'serve nbd --socket longer than a Unix socket path', args: ['serve', 'nbd', v(), '--socket', at(`${'s'.repeat(120)}.sock`)], code: 'invalid-input', mentions: /at most 107 bytes/ },
  { what: 'serve nbd --socket in a missing directory', args: ['serve', 'nbd', v(), '--socket', at('nodir/v.sock')], code: 'not-found', mentions: /nodir\/v\.sock: no such directory \S+nodir \(create the directory first, or choose a --socket path in an existing one\)$/ },
  { what: 'serve nbd --journal-size without --journal, even at the default', args: ['serve', 'nbd', v(), '--socket', at('v.sock'), '--journal-size', '1G'], code: 'usage', mentions: /--journal-size needs --journal/ },
  { what: 'serve nbd --journal-size 0', args: ['serve', 'nbd', v(), '--socket', at('v.sock'), '--journal', '--journal-size', '0'], code: 'invalid-input', mentions: /--journal-size 0 is below the least a journal needs \(64K\)/ },
  { what: 'serve nbd --cp-interval of a month', args: ['serve', 'nbd', v(), '--socket', at('v.sock'), '--cp-interval', '2592000'], code: 'invalid-input', mentions: /--cp-interval 2592000 is more than a day/ },
  { what: 'serve nbd --handshake-timeout of a month', args: ['serve', 'nbd', v(), '--socket', at('v.sock'), '--handshake-timeout', '2592000'], code: 'invalid-input', mentions: /--handshake-timeout 2592000 is more than a day/ },
  { what: 'serve nbd --export-name longer than NBD allows', args: ['serve', 'nbd', v(), '--socket', at('v.sock'), '--export-name', 'e'.repeat(5000)], code: 'invalid-input', mentions: /--export-name is 5000 bytes, more than the 4096 an NBD export name may have/ },
  // a new tape too small for one tape file: refused, and the tape directory is not made
  { what: 'dump to a --new-tape too small for a tape file', args: ['dump', v(), '--level', '0', '--snapshot', 's1', '--to', `tape:${at('newtape')}`, '--new-tape', '--tape-size', '1K'], code: 'invalid-input', mentions: /newtape is too small/ },
  { what: 'restore --from a protection destination without --as-of', args: ['restore', '--from', at('v2.cdp'), '--to', at('never.vol')], code: 'invalid-input', mentions: /v2\.cdp: is a directory \(a protection destination: restore it as of a time with: imgstream restore --to NEW --as-of TIME --from .*v2\.cdp, where TIME latest is its newest recovery point\)$/ },
  { what: 'mirror update into a protection destination', args: ['mirror', 'update', at('v.vol'), '--to', at('v2.cdp')], code: 'not-a-volume', mentions: /v2\.cdp: is a protection destination, not a mirror \(a protection destination takes writes from imgstream protect alone: mirror to another path\)$/ },
  { what: 'snapshot create on a protection destination', args: ['snapshot', 'create', at('v2.cdp'), 'x'], code: 'not-a-volume', mentions: /v2\.cdp: is a protection destination, not a volume \(rebuild a volume from it with: imgstream restore --to NEW --as-of TIME --from .*v2\.cdp\)$/ },
  { what: 'verify of a directory that is no tape', args: ['verify', at('adir')], code: 'invalid-input', mentions: /adir: is a directory; give the stream files in it one by one/ },
  { what: 'restore from a tape directory that is not there (no --new-tape hint: restore has none)', args: ['restore', '--from', `tape:${at('no-such-tape')}`, '--to', at('never.vol')], code: 'not-found', mentions: /no-such-tape: no such directory or device \(mount the tape, or check the path/ },
  { what: 'dump to a file with the tape flags', args: ['dump', v(), '--level', '0', '--to', at('never.l0'), '--record-size', '0', '--tape-size', '1M'], code: 'usage', mentions: /--tape-size, --record-size are for tape targets, and --to .*never\.l0 is not one/ },
  { what: 'serve nbd with both --socket and --listen', args: ['serve', 'nbd', v(), '--socket', at('x.sock'), '--listen', '127.0.0.1:0'], code: 'usage', mentions: /^imgstream: --listen and --socket cannot both be given/ },
  { what: 'mirror start with both --every and --cron (an exclusive pair: one sentence, not oclif\'s list)', args: ['mirror', 'start', v(), '--to', at('never.mirror'), '--every', '5m', '--cron', '* * * * *'], code: 'usage', mentions: /^imgstream: --cron cannot be combined with --every \(see: imgstream mirror start --help\)$/ },
  { what: 'dump --level out of range (oclif\'s "Parsing --level Expected …" as one sentence; invalid input, as a bad size is)', args: ['dump', v(), '--level', '10', '--to', at('never.l10')], code: 'invalid-input', mentions: /^imgstream: --level 10: expected an integer less than or equal to 9 \(see: imgstream dump --help\)$/ },
  { what: 'dump -l out of range, the short form', args: ['dump', v(), '-l', '10', '--to', at('never.l10')], code: 'invalid-input', mentions: /^imgstream: --level 10: expected an integer less than or equal to 9/ },
  { what: 'dump --compress-level out of range', args: ['dump', v(), '--level', '0', '--compress-level', '20', '--to', at('never.l0')], code: 'invalid-input', mentions: /^imgstream: --compress-level 20: expected an integer less than or equal to 19/ },
  { what: 'dump --threads out of range', args: ['dump', v(), '--level', '0', '--threads', '1000', '--to', at('never.l0')], code: 'invalid-input', mentions: /^imgstream: --threads 1000: expected an integer less than or equal to 16/ },
  { what: 'dump --compress not one of its choices', args: ['dump', v(), '--level', '0', '--compress', 'lz4', '--to', at('never.l0')], code: 'invalid-input', mentions: /^imgstream: --compress lz4: expected one of zstd, none \(see: imgstream dump --help\)$/ },
  ...['1.5', '1e3', '0x10'].map((n) => ({ what: `volume create --max-snapshots ${n} (not an integer: invalid input, as 70000 is)`, args: ['volume', 'create', at('never.vol'), '--size', '1M', '--max-snapshots', n], code: 'invalid-input' as const, mentions: new RegExp(`^imgstream: --max-snapshots ${n}: expected an integer`) })),
  { what: 'verify of a volume, not a stream', args: ['verify', v()], code: 'not-a-volume', mentions: /is an imgstream volume, not an image stream; give a stream a dump wrote/ },
  { what: 'verify of a few bytes that are no stream', args: ['verify', at('hello.txt')], code: 'not-a-volume', mentions: /hello\.txt: not an imgstream image stream \(bad magic\)/ },
  // a blank medium: zeros where a tape file begins (tar would read on to the end of the medium: for ever here)
  { what: 'tape log of a file, not a tape directory', args: ['tape', 'log', `tape:${at('a.img')}#1`], code: 'invalid-input', mentions: /a\.img: not a tape directory \(a file\), and tape log reads a tape file in one/ },
  { what: 'tape log of a pipe or device', args: ['tape', 'log', 'tape:/dev/null#1'], code: 'invalid-input', mentions: /\/dev\/null: not a tape directory \(a device or a pipe\)/ },
  { what: 'tape log of a tape set', args: ['tape', 'log', `tape:${at('adir')}#1,${at('nope')}`], code: 'invalid-input', mentions: /tape log reads one tape file of one tape, and 2 tapes are given/ },
  { what: 'verify of a blank tape device', args: ['verify', 'tape:/dev/zero'], code: 'corrupt', mentions: /tape \/dev\/zero: blank: zeros where a tape file begins/ },
  // a volume is never an output, --force or not (a typo in a cron job must not destroy one)
  { what: 'dump --force onto its own source volume', args: ['dump', v(), '--level', '0', '--snapshot', 's1', '--to', v(), '--force'], code: 'invalid-input', mentions: /v\.vol: is the volume being dumped; a dump never writes over its own inputs/ },
  { what: 'dump --force onto another volume', args: ['dump', v(), '--level', '0', '--snapshot', 's1', '--to', at('full.vol'), '--force'], code: 'invalid-input', mentions: /full\.vol: is an imgstream volume/ },
  { what: 'volume export --force onto a volume', args: ['volume', 'export', v(), '--to', at('full.vol'), '--force'], code: 'invalid-input', mentions: /full\.vol: is an imgstream volume; an export never writes over a volume/ },
  // empty paths are named as such (they printed "imgstream: : no such file or directory")
  { what: 'volume info of an empty path', args: ['volume', 'info', ''], code: 'invalid-input', mentions: /^imgstream: the volume path is empty/ },
  { what: 'verify of an empty path', args: ['verify', ''], code: 'invalid-input', mentions: /^imgstream: empty path given while opening the stream/ },
  { what: 'protect status of an empty path', args: ['protect', 'status', ''], code: 'invalid-input', mentions: /^imgstream: the protection destination path is empty/ },
  // restore --as-of with --from: a path meant as a protection destination is named for what is wrong with it
  { what: 'restore --as-of with two --from (one sentence, no "except")', args: ['restore', '--to', at('never.vol'), '--as-of', 'latest', '--from', at('a.cdp'), '--from', at('b.cdp')], code: 'usage', mentions: /^imgstream: --as-of takes one --from \(a protection destination\), not 2 \(restore --to NEW --as-of TIME --from DEST; streams are restored without --as-of/ },
  { what: 'restore --as-of from a missing destination', args: ['restore', '--to', at('never.vol'), '--as-of', '2026-12-01', '--from', at('nosuch.cdp')], code: 'not-found', mentions: /nosuch\.cdp: no such protection destination/ },
  { what: 'restore --as-of from a directory without protect.json', args: ['restore', '--to', at('never.vol'), '--as-of', '2026-12-01', '--from', at('adir')], code: 'not-found', mentions: /adir: not a protection destination \(no protect\.json\)/ },
  { what: 'restore --as-of an empty string', args: ['restore', '--to', at('never.vol'), '--as-of', ''], code: 'usage', mentions: /--as-of is empty/ },
  // catalogs: checked before the dump takes its snapshot and writes its stream
  { what: 'dump with an unreadable catalog', args: ['dump', v(), '--level', '0', '--to', at('never.l0'), '--catalog', at('bad.catalog')], code: 'corrupt', mentions: /bad\.catalog: not a readable imgstream catalog/ },
  // a file of another kind is not a damaged catalog: no hint to rebuild it (catalog-faults.test.ts: rebuild refuses it)
  { what: 'catalog list of a file that is not a catalog', args: ['catalog', 'list', '--catalog', at('passwd.copy')], code: 'not-a-volume', mentions: /passwd\.copy: not an imgstream catalog: it holds something else \(give --catalog the catalog file/ },
  { what: 'dump with --catalog naming a file that is not a catalog', args: ['dump', v(), '--level', '0', '--to', at('never.l0'), '--catalog', at('passwd.copy')], code: 'not-a-volume', mentions: /not an imgstream catalog/ },
  { what: 'dump with an empty --catalog', args: ['dump', v(), '--level', '0', '--to', at('never.l0'), '--catalog', ''], code: 'invalid-input', mentions: /catalog path is empty/ },
  { what: 'protect status of a destination of a newer version', args: ['protect', 'status', at('v2.cdp')], code: 'not-a-volume', mentions: /protect\.json: a protection destination of version 2, which this imgstream does not read/ },
  { what: 'dump with a catalog of a newer version', args: ['dump', v(), '--level', '0', '--to', at('never.l0'), '--catalog', at('v99.catalog')], code: 'not-a-volume', mentions: /version 99/ },
  { what: 'catalog list of a catalog with a malformed record', args: ['catalog', 'list', '--catalog', at('malformed.catalog')], code: 'corrupt', mentions: /dump record 1 of 1 is malformed/ },
  // command line
  { what: 'unknown flag', args: ['volume', 'info', v(), '--nope'], code: 'usage', mentions: /--nope/, json: true },
  { what: 'unknown flag on import', args: ['volume', 'import', v(), '--from', at('a.img'), '--fast'], code: 'usage', mentions: /--fast/ },
  { what: 'missing argument', args: ['volume', 'create', '--size', '1M'], code: 'usage', mentions: /volume/, json: true },
  { what: 'missing snapshot name', args: ['snapshot', 'create', v()], code: 'usage', mentions: /missing argument NAME/ },
  { what: 'missing required flag', args: ['volume', 'import', v()], code: 'usage', mentions: /from/ },
  { what: 'unexpected extra argument', args: ['volume', 'info', v(), 'extra'], code: 'usage', mentions: /extra/ },
  { what: 'non-numeric --max-snapshots', args: ['volume', 'create', at('new.vol'), '--size', '1M', '--max-snapshots', 'many'], code: 'invalid-input' },
  { what: '--json with --to -', args: ['volume', 'export', v(), '--to', '-', '--json'], code: 'usage', mentions: /--json/, json: 'only' },
  { what: 'unknown command', args: ['frobnicate', v()], code: 'usage', mentions: /frobnicate/ },
  { what: 'unknown subcommand', args: ['volume', 'frobnicate', v()], code: 'usage', mentions: /frobnicate/ },
];

function expectOneLineError(r: CliResult, c: Case, json: boolean): void {
  const codes = Array.isArray(c.code) ? c.code : [c.code];
  const exits = codes.map((k) => DOCUMENTED[k]);
  const lines = stderrLines(r);
  const ctx = `${c.what}${json ? ' --json' : ''}: exit ${r.code ?? r.signal}, stderr ${JSON.stringify(r.stderr)}, stdout ${JSON.stringify(r.stdout.slice(0, 500))}`;
  expect(r.signal, ctx).toBeNull();
  expect(exits, ctx).toContain(r.code);
  expect(lines, ctx).toHaveLength(1);
  expect(lines[0], ctx).toMatch(/^imgstream: \S/);
  expect(r.stderr, ctx).not.toMatch(/^\s+at /m);
  expect(r.stderr, ctx).not.toMatch(/internal error/);
  expect(parenDepth(lines[0]), `${ctx}: parentheses nested`).toBeLessThanOrEqual(1);
  if (c.mentions) expect(lines[0], ctx).toMatch(c.mentions);
  if (!json) {
    if (c.report) expect(r.stdout, ctx).toMatch(/problem|not in the/);
    else expect(r.stdout, ctx).toBe('');
    return;
  }
  // --json: stdout is one JSON value a program can parse, carrying the error
  let parsed: { error?: { code?: string; exit?: number; message?: string } };
  try {
    parsed = JSON.parse(r.stdout);
  } catch {
    throw new Error(`${ctx}: stdout is not one JSON object`);
  }
  expect(codes, ctx).toContain(parsed.error?.code);
  expect(parsed.error?.exit, ctx).toBe(r.code);
  expect(lines[0], ctx).toContain(parsed.error?.message ?? '<no message>');
}

/** How deep parentheses nest in a line: a hint in parentheses holds none of its own. */
function parenDepth(line: string): number {
  let depth = 0;
  let max = 0;
  for (const ch of line) {
    if (ch === '(') max = Math.max(max, ++depth);
    else if (ch === ')') depth = Math.max(0, depth - 1);
  }
  return max;
}

function withJson(args: string[]): string[] {
  const dd = args.indexOf('--');
  return dd < 0 ? [...args, '--json'] : [...args.slice(0, dd), '--json', ...args.slice(dd)];
}

describe('bad input via the CLI', () => {
  it('documents the exit codes of src/core/errors.ts', () => {
    const table = Object.fromEntries(Object.entries(EXIT_CODES).map(([k, e]) => [k, e.exit]));
    expect(table).toEqual(DOCUMENTED);
  });

  it('sets up volumes the cases can fail on', async () => {
    // the fixtures are what the cases claim: v.vol has s1 and s2 holding a.img and b.img
    const list = await inProcessJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', v()], { env });
    expect(list.snapshots.map((s) => s.name).filter((n) => !n.startsWith('mirror.'))).toEqual(['s1', 's2']); // and the mirror's snapshot
    expect(await exportSha(`${v()}@s1`)).toBe(sha256File(at('a.img')));
    expect(await exportSha(`${v()}@s2`)).toBe(sha256File(at('b.img')));
    const full = await inProcessJson<{ freeBlocks: number; blockSize: number }>(['volume', 'info', at('full.vol')], { env });
    expect(full.blockSize).toBe(BS);
    expect(full.freeBlocks).toBeLessThan(256 / 2); // a different 256-block image cannot fit
  });

  for (const c of cases) {
    const variants = c.json === 'only' ? [true] : c.json ? [false, true] : [false];
    it(`${c.what}: exit ${Array.isArray(c.code) ? c.code.join('|') : c.code}, one line, nothing changed`, async () => {
      for (const json of variants) {
        const args = json && c.json !== 'only' ? withJson(c.args) : c.args;
        const stdin = c.input !== undefined || args.includes('-');
        const before = fingerprintTree(dir);
        const r = stdin ? cli(args, c.input?.()) : await runBundled(args, { env });
        expectOneLineError(r, c, json);
        if ('leakedFds' in r) expect(r.leakedFds, `${c.what}: files left open`).toEqual([]);
        expect(fingerprintTree(dir), `${c.what}: files changed (or were written)`).toEqual(before);
        expect(fs.existsSync(lockDir) ? fs.readdirSync(lockDir) : [], `${c.what}: lock left behind`).toEqual([]);
        if (!json || stdin) continue;
        // the executable, as a process, prints the same and exits the same
        const p = cli(args);
        expect({ code: p.code, signal: p.signal, stdout: p.stdout, stderr: p.stderr }, `${c.what} --json: as a process`).toEqual({ code: r.code, signal: null, stdout: r.stdout, stderr: r.stderr });
        expect(fingerprintTree(dir), `${c.what} --json: files changed by the process`).toEqual(before);
        expect(fs.existsSync(lockDir) ? fs.readdirSync(lockDir) : [], `${c.what} --json: lock left behind by the process`).toEqual([]);
      }
    }, 30_000);
  }

  it('leaves every volume intact and usable after all of the above', async () => {
    for (const f of ['v.vol', 'full.vol']) {
      const r = cliOk(['volume', 'check', at(f), '--json'], { env });
      expect(JSON.parse(r.stdout).ok).toBe(true);
    }
    expect(await exportSha(`${v()}@s1`)).toBe(sha256File(at('a.img')));
    expect(await exportSha(v())).toBe(sha256File(at('b.img')));
    expect(await exportSha(at('full.vol'))).toBe(sha256File(at('full1.img')));
  }, 30_000);
});

// Imports from a pipe cannot know their length or their space needs in advance, so a
// failing one may already have written data into free blocks (the last CP never
// references them). What must hold is that the volume's content is unchanged: the same
// CP, the same exports, the same snapshots, a clean check, and it stays usable.
describe('failing streamed imports leave the volume at its last CP', () => {
  const sdir = path.join(root, 'stream');
  const sat = (name: string) => path.join(sdir, name);

  async function state(vol: string) {
    const info = await inProcessJson<Record<string, unknown>>(['volume', 'info', vol], { env });
    const snaps = (await inProcessJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol], { env })).snapshots.map((s) => s.name);
    const exports: Record<string, string> = { active: await exportSha(vol) };
    for (const s of snaps) exports[s] = await exportSha(`${vol}@${s}`);
    const { generation, usedBlocks, mappedBlocks, freeBlocks, uuid, lastCp } = info;
    return { generation, usedBlocks, mappedBlocks, freeBlocks, uuid, lastCp, snaps, exports };
  }

  async function expectCleanCheck(vol: string): Promise<void> {
    const r = await inProcess(['volume', 'check', vol, '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).ok).toBe(true);
  }

  it('an image larger than the disk, several chunks long, from stdin', async () => {
    fs.mkdirSync(sdir, { recursive: true });
    const vol = sat('s.vol');
    await setupOk(['volume', 'create', vol, '--size', '16M', '--max-snapshots', '4'], { env });
    const a = writeImage(sat('a.img'), 4096, BS, 21);
    await setupOk(['volume', 'import', vol, '--from', sat('a.img')], { env });
    await setupOk(['snapshot', 'create', vol, 'one'], { env });
    const before = await state(vol);
    expect(before.exports.active).toBe(sha256(a));
    const big = randomImage(6144, BS, 22); // 24 MiB: the first chunks fit, the last does not
    const r = runCli(['volume', 'import', vol, '--from', '-'], { env, input: big });
    const lines = stderrLines(r);
    expect(r.code, r.stderr).toBe(DOCUMENTED['invalid-input']);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^imgstream: .*larger than the logical disk/);
    expect(await state(vol)).toEqual(before);
    await expectCleanCheck(vol);
  }, 60_000);

  it('a different image into a full volume, from stdin; the volume stays usable', async () => {
    const vol = sat('f.vol');
    await setupOk(['volume', 'create', vol, '--size', '1M', '--volume-size', '1200K', '--max-snapshots', '4'], { env });
    const one = randomImage(256, BS, 31, 0);
    const two = randomImage(256, BS, 32, 0);
    cliOk(['volume', 'import', vol, '--from', '-'], { env, input: one });
    await setupOk(['snapshot', 'create', vol, 'full'], { env });
    const before = await state(vol);
    const r = runCli(['volume', 'import', vol, '--from', '-'], { env, input: two });
    expect(r.code, r.stderr).toBe(DOCUMENTED['volume-full']);
    expect(stderrLines(r)).toHaveLength(1);
    expect(r.stderr).toMatch(/^imgstream: .*full/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(await state(vol)).toEqual(before);
    await expectCleanCheck(vol);
    // it still takes a change that fits: a few blocks (a whole new image never fits in
    // one CP here, since the blocks it replaces stay in use until that CP)
    const three = Buffer.from(one);
    mutate(three, BS, 10, 33);
    cliOk(['volume', 'import', vol, '--from', '-'], { env, input: three });
    expect(await exportSha(vol)).toBe(sha256(three));
    expect(await exportSha(`${vol}@full`)).toBe(sha256(one));
    await expectCleanCheck(vol);
  }, 60_000);
});
