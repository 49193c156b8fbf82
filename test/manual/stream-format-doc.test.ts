// The two prose versions of the image stream format (README "Stream format" and the
// hand-written man/imgstream-stream.5) say what src/format/image-stream.ts does: the DATA
// layout (an encoded record has a zero u32 after n) and the feature bit values. They had
// drifted apart: the README's DATA lacked the u32, and it called MAPDELTA "feature bit 2"
// where the man page said bit 1 (the value is 2).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FEATURE_ENCRYPTED, FEATURE_MAPDELTA, FEATURE_ZSTD, KNOWN_FEATURES, encodeData } from '../../src/format/image-stream.js';
import { REPO_ROOT } from '../support/cli.js';

const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
const section = readme.slice(readme.indexOf('## Stream format'), readme.indexOf('\n## ', readme.indexOf('## Stream format') + 1));
/** The man page as plain text: roff escapes and font changes removed. */
const man = fs.readFileSync(path.join(REPO_ROOT, 'man', 'imgstream-stream.5'), 'utf8').replace(/\\\(mu/g, 'x').replace(/\\f[BIRP]/g, '').replace(/\\-/g, '-').replace(/\n\.(TP|PP|B|I|IR)\s*/g, '\n');

describe('stream format prose agrees with src/format/image-stream.ts', () => {
  it('DATA: u32 n, a zero u32, n x u64 VBN, then the blocks', () => {
    const p = encodeData([7, 9], Buffer.alloc(2 * 512, 0xaa), 512);
    expect(p.readUInt32LE(0)).toBe(2);
    expect(p.readUInt32LE(4)).toBe(0);
    expect(Number(p.readBigUInt64LE(8))).toBe(7);
    expect(p.length).toBe(8 + 2 * 8 + 2 * 512);
    expect(section).toMatch(/DATA +3 +u32 n, u32 0, n x u64 VBN, n blocks/);
    expect(man).toMatch(/3 DATA\n[^]*?u32 n, u32 zero, n x u64 VBN, then n x blockSize\s+bytes/);
  });

  it('feature bits: each named with its bit number and value, the same in both', () => {
    expect(KNOWN_FEATURES).toBe(FEATURE_ZSTD | FEATURE_MAPDELTA | FEATURE_ENCRYPTED);
    for (const [value, what] of [[FEATURE_ZSTD, /zstd/], [FEATURE_MAPDELTA, /MAPDELTA/], [FEATURE_ENCRYPTED, /encrypted/]] as const) {
      const bit = Math.log2(value);
      const said = new RegExp(`bit ${bit} \\(${value}\\)`, 'i');
      expect(section, `README: bit ${bit} (${value})`).toMatch(new RegExp(`${said.source}[^,\\n]*${what.source}`, 'i'));
      expect(man, `man: bit ${bit} (${value})`).toMatch(new RegExp(`${said.source} means[^;.]*${what.source}`, 'i'));
    }
    // MAPDELTA's own entry names the same bit in both
    const mapdelta = `feature bit ${Math.log2(FEATURE_MAPDELTA)} (${FEATURE_MAPDELTA})`;
    expect(section).toContain(mapdelta);
    expect(man).toContain(mapdelta);
    expect(section).not.toMatch(/feature bit 2\)/);
  });
});
