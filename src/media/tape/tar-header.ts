// The few fields of a ustar header a reader of multiplexed tape files needs to walk an
// archive with seeks (name, size, type, checksum), as tar-stream would decode them. Pure.
// tar-stream's own header codec is not exported, and its extract reads every byte of
// every member, which is what seeking past other streams' members avoids.
import { TAR_BLOCK } from './tape-format.js';

export interface TarHeader {
  name: string;
  size: number;
  type: 'file' | 'other';
}

function text(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

function octal(b: Buffer, off: number, len: number): number | null {
  const s = text(b, off, len).trim();
  if (!/^[0-7]+$/.test(s)) return null;
  return parseInt(s, 8);
}

/** True for a block of zeros (the end of an archive). */
export function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** The header in `b` (one 512-byte block), or null when its checksum does not match (damaged, or not a header). */
export function decodeTarHeader(b: Buffer): TarHeader | null {
  if (b.length < TAR_BLOCK) return null;
  const stored = octal(b, 148, 8);
  if (stored === null) return null;
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : b[i];
  if (sum !== stored) return null;
  const size = octal(b, 124, 12);
  if (size === null) return null;
  const prefix = b.toString('latin1', 257, 263) === 'ustar\u0000' ? text(b, 345, 155) : '';
  const name = text(b, 0, 100);
  const flag = b[156];
  return { name: prefix ? `${prefix}/${name}` : name, size, type: flag === 0 || flag === 0x30 ? 'file' : 'other' };
}
