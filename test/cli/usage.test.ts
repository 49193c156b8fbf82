// The USAGE line of --help is docopt the user can read: no empty alternative
// ("[--tls-fingerprint sha256:HEX | ]", printed while --tls-ca, --tls-fingerprint and
// --plain were declared oclif-exclusive), no flag shown as needing another it does not
// need. The conflict those declarations enforced is still refused, exit 2, in one line.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCliAsync, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError, pool } from '../support/stream-cli.js';

const commands = ['restore', 'dump', 'verify', 'catalog rebuild', 'mirror update', 'mirror start', 'mirror break', 'mirror resync', 'replicate pull'];

function usageOf(help: string): string {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => l.trim() === 'USAGE');
  const end = lines.findIndex((l, i) => i > start && l.trim() === '');
  return lines.slice(start + 1, end).join(' ').replace(/\s+/g, ' ').trim();
}

describe('usage lines', () => {
  it('of the commands with peer flags show each flag once, with no empty alternative', async () => {
    const usages = await pool(2, commands, async (c) => {
      const r = await runCliAsync([...c.split(' '), '--help']);
      expect(r.code, `${c} --help`).toBe(0);
      return [c, usageOf(r.stdout)] as const;
    });
    for (const [c, u] of usages) {
      expect(u, c).toMatch(new RegExp(`^\\$ imgstream ${c} `));
      expect(u, c).not.toMatch(/\|\s*\]|\[\s*\||\|\s*\|/);
      for (const flag of ['--token-file', '--tls-ca', '--tls-fingerprint', '--plain']) expect(u.split(flag).length - 1, `${c}: ${flag} in ${u}`).toBe(1);
      expect(u, c).toContain('[--tls-fingerprint sha256:HEX]');
    }
    // serve peer: TLS (certificate and key together) or --plain
    const peer = usageOf((await runCliAsync(['serve', 'peer', '--help'])).stdout);
    expect(peer).toContain('[--plain | [--tls-cert FILE --tls-key FILE]]');
    expect(peer).not.toMatch(/\|\s*\]|\[\s*\||\|\s*\|/);
    // restore: --as-of stands alone; --volume only narrows it
    const restore = usages.find(([c]) => c === 'restore')![1];
    expect(restore).toContain('[--as-of SNAPSHOT|DATE]');
    expect(restore).toContain('[--volume PATH|UUID]');
  });

  it('still refuse --plain with --tls-ca or --tls-fingerprint, and --volume without --as-of (exit 2)', async () => {
    const url = 'peer://127.0.0.1:9/x.l0';
    expectOneLineError(await runCliAsync(['verify', url, '--token-file', '/nonexistent', '--plain', '--tls-fingerprint', `sha256:${'0'.repeat(64)}`]), 'plain + fingerprint', 2, /--plain cannot be combined with --tls-ca or --tls-fingerprint/);
    expectOneLineError(await runCliAsync(['verify', url, '--token-file', '/nonexistent', '--plain', '--tls-ca', '/nonexistent']), 'plain + ca', 2, /--plain cannot be combined/);
    expectOneLineError(await runCliAsync(['restore', '--from', '/nonexistent', '--to', '/nonexistent.vol', '--volume', 'abcd']), 'volume without as-of', 2, /give it with --as-of/);
  });

  it('help before a topic or command is its --help; an unknown command and missing arguments are one line each, exit 2', async () => {
    const [root, rootHelp, topic, topicHelp, command, commandHelp] = await Promise.all(
      [['--help'], ['help'], ['volume', '--help'], ['help', 'volume'], ['volume', 'import', '--help'], ['help', 'volume', 'import']].map((a) => runCliAsync(a)),
    );
    for (const [a, b, what] of [[root, rootHelp, 'root'], [topic, topicHelp, 'topic'], [command, commandHelp, 'command']] as const) {
      expect(b.code, `help ${what}: ${b.stderr}`).toBe(0);
      expect(b.stdout, `help ${what}`).toBe(a.stdout);
    }
    expect(commandHelp.stdout).toMatch(/USAGE\s+\$ imgstream volume import/);
    expectOneLineError(await runCliAsync(['volume', 'info']), 'no volume', 2, /^imgstream: missing argument VOLUME: Volume file or block device \(see: imgstream volume info --help\)$/);
    expectOneLineError(await runCliAsync(['snapshot', 'create']), 'no volume, no name', 2, /missing arguments VOLUME: [^;]*; NAME: Name of the new snapshot \(see: imgstream snapshot create --help\)$/);
    // a description oclif wraps onto a second line is one argument's, not another
    expectOneLineError(await runCliAsync(['protect', 'status']), 'no destination', 2, /missing argument DESTINATION: Protection destination: a directory, or peer:\/\/HOST:PORT\/NAME; or the protected volume \(see: imgstream protect status --help\)$/);
    // a required flag left out is named as the user types it (it read "The following error occurred: Missing required flag to")
    const [noTo, noPeerFlags] = await Promise.all([runCliAsync(['volume', 'export', '/nonexistent.vol', '--json']), runCliAsync(['serve', 'peer'])]);
    expectOneLineError(noTo, 'no --to', 2, /^imgstream: missing flag --to \(see: imgstream volume export --help\)$/);
    expect(JSON.parse(noTo.stdout).error.message).toBe('missing flag --to');
    expectOneLineError(noPeerFlags, 'no --listen, --root, --token-file', 2, /^imgstream: missing flags --listen, --root, --token-file \(see: imgstream serve peer --help\)$/);
    for (const args of [['help', 'frob'], ['frob', '--help'], ['help', 'volume', 'frob']]) {
      expectOneLineError(await runCliAsync(args), args.join(' '), 2, /unknown command "(volume )?frob"/);
    }
    // with --json, the JSON error object on stdout too, as every command's error has (it printed none)
    for (const args of [['frob', '--json'], ['volume', 'frob', '--json']]) {
      const r = await runCliAsync(args);
      expectOneLineError(r, args.join(' '), 2, /unknown command "(volume )?frob"/);
      expect(JSON.parse(r.stdout), args.join(' ')).toEqual({ error: { code: 'usage', exit: 2, message: expect.stringMatching(/^unknown command "(volume )?frob"$/), hint: 'see: imgstream --help' } });
    }
    expect((await runCliAsync(['frob'])).stdout).toBe('');
  });
});

describe('verify', () => {
  const dir = tempDir('imgstream-usage-verify-');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const at = (f: string) => path.join(dir, f);
  const env = { IMGSTREAM_CATALOG: at('catalog.json') };

  it('takes its sources as restore does (--from, repeatable), or as arguments; none is a missing argument', async () => {
    writeImage(at('a.img'), 64, 4096, 1);
    await setupOk(['volume', 'create', at('v.vol'), '--size', '256K'], { env });
    await setupOk(['volume', 'import', at('v.vol'), '--from', at('a.img')], { env });
    for (const [level, out] of [['0', 'l0'], ['1', 'l1']]) {
      const r = await runCliAsync(['dump', at('v.vol'), '--level', level, '--to', at(out)], { env });
      expect(r.code, r.stderr).toBe(0);
    }
    const asArgs = await runCliAsync(['verify', at('l0'), at('l1')], { env });
    const asFlags = await runCliAsync(['verify', '--from', at('l0'), '-f', at('l1')], { env });
    const mixed = await runCliAsync(['verify', at('l0'), '--from', at('l1')], { env });
    expect(asArgs.code, asArgs.stderr).toBe(0);
    expect(asArgs.stdout).toMatch(/2 stream\(s\) verified/);
    expect(asFlags.code, asFlags.stderr).toBe(0);
    expect(asFlags.stdout).toBe(asArgs.stdout);
    expect(mixed.stdout).toBe(asArgs.stdout);
    // in chain order: the level 1 given first is the chain's fault, named as such
    expect((await runCliAsync(['verify', '--from', at('l1'), '--from', at('l0')], { env })).code).not.toBe(0);
    expectOneLineError(await runCliAsync(['verify'], { env }), 'no source', 2, /^imgstream: missing argument SOURCE: Stream sources: .* \(see: imgstream verify --help\)$/);
  });
});
