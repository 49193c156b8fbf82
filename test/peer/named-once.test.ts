// Errors that come back through a peer name what they are about once, by the URL the
// user gave: the daemon names what it holds by its NAME ("m.vol: not an imgstream
// volume"), and the client used to put its own name for it in front ("peer://H:P/m.vol:
// m.vol: ..." for mirrors, "peer H:P: d.l0: ..." for streams). Mirror, dump, restore and
// replicate and protect status through a real `imgstream serve peer`, each refusal one line
// "imgstream: peer://HOST:PORT/NAME: problem (hint)" with its exit code.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, stderrLines, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { makeToken, startDaemon, type DaemonProcess } from './support.js';

const root = tempDir('imgstream-peer-named-once-');
const at = (n: string) => path.join(root, n);
const dir = at('peer-root');
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_MIRROR_STATE: at('mirrors.json'), IMGSTREAM_CATALOG: at('catalog.json') };
let daemon: DaemonProcess;
let token: string;

beforeAll(async () => {
  fs.mkdirSync(dir);
  token = makeToken(root);
  await setupOk(['volume', 'create', at('src.vol'), '--size', '1M', '-q'], { env });
  writeImage(at('src.img'), 256, 4096, 5);
  await setupOk(['volume', 'import', at('src.vol'), '--from', at('src.img'), '-q'], { env });
  await setupOk(['volume', 'create', path.join(dir, 'plain.vol'), '--size', '1M', '-q'], { env }); // no master snapshot
  fs.writeFileSync(path.join(dir, 'junk'), 'not a volume\n');
  fs.mkdirSync(path.join(dir, 'adir'));
  daemon = await startDaemon(['--root', dir, '--listen', '127.0.0.1:0', '--token-file', token, '--plain']);
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('an error through a peer', () => {
  it('names the destination once, by its URL, in one line', () => {
    const peer = ['--token-file', token, '--plain'];
    const src = at('src.vol');
    expect(runCli(['dump', src, '--level', '0', '--to', daemon.url('d.l0'), ...peer], { env }).code).toBe(0);
    const cases: Array<[string, string[], number, string, string]> = [
      ['mirror update into a file that is not a volume', ['mirror', 'update', src, '--to', daemon.url('junk')], 5, 'junk', 'not an imgstream volume, so not a mirror'],
      ['mirror update into a directory', ['mirror', 'update', src, '--to', daemon.url('adir')], 5, 'adir', 'is a directory, not a volume'],
      ['mirror break of nothing', ['mirror', 'break', daemon.url('nosuch')], 3, 'nosuch', 'no mirror there to break'],
      ['dump onto an existing name', ['dump', src, '--level', '0', '--to', daemon.url('d.l0')], 6, 'd.l0', 'already exists on the peer'],
      ['restore from a missing stream', ['restore', '--from', daemon.url('sub/none.l0'), '--to', at('new.vol')], 3, 'sub/none.l0', 'no such stream on the peer'],
      ['restore from a directory', ['restore', '--from', daemon.url('adir'), '--to', at('new.vol')], 4, 'adir', 'is a directory on the peer'],
      // a daemon's message the client already rewrote to name the URL ("peer H:P: peer://H:P/none.cdp: ..." before)
      ['restore --as-of from a missing protection destination', ['restore', '--to', at('new.vol'), '--as-of', '2026-12-01', '--from', daemon.url('none.cdp')], 3, 'none.cdp', 'no such protection destination'],
      ['protect status of a missing protection destination', ['protect', 'status', daemon.url('none.cdp')], 3, 'none.cdp', 'no such protection destination'],
      ['replicate pull from a missing volume', ['replicate', 'pull', at('replica.vol'), '--from', daemon.url('nosuch.vol')], 3, 'nosuch.vol', "no such volume on the peer (give the name of a volume in the daemon's --root directory)"],
      ['replicate pull from a volume without a master snapshot', ['replicate', 'pull', at('replica.vol'), '--from', daemon.url('plain.vol')], 4, 'plain.vol', 'has no master snapshot to replicate'],
    ];
    for (const [what, args, code, name, problem] of cases) {
      const r = runCli([...args, ...peer], { env });
      expect(r.code, `${what}: ${r.stderr}`).toBe(code);
      const lines = stderrLines(r);
      expect(lines, what).toHaveLength(1);
      expect(lines[0].startsWith(`imgstream: ${daemon.url(name)}: ${problem}`), `${what}: ${lines[0]}`).toBe(true);
    }
    expect(fs.existsSync(at('new.vol'))).toBe(false);
    expect(fs.existsSync(at('replica.vol'))).toBe(false);
    // a refusal about no name (the connection) still names the peer it came from
    const wrong = makeToken(root, 'wrong-token', { contents: 'another token, long enough to be taken\n' });
    const auth = runCli(['mirror', 'update', src, '--to', daemon.url('m.vol'), '--token-file', wrong, '--plain'], { env });
    expect(auth.code).toBe(11);
    expect(stderrLines(auth)).toEqual([expect.stringMatching(new RegExp(`^imgstream: peer 127\\.0\\.0\\.1:${daemon.info.port}: authentication failed`))]);
  }, 120_000);
});
