// Sizes on the command line: a plain byte count or a number with a binary unit
// (K, M, G, T, P; optional "i" and "B", case-insensitive): 96M, 1T, 4KiB, 1.5G.
import { InvalidInputError } from './errors.js';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text);
  if (!m) throw new InvalidInputError(`invalid ${what} "${text}"`, 'use a byte count or a number with K, M, G, T or P (binary units: MB and MiB are read as M), e.g. 96M');
  const bytes = Number(m[1]) * UNITS[m[2].toLowerCase()];
  if (bytes > Number.MAX_SAFE_INTEGER) throw new InvalidInputError(`invalid ${what} "${text}": at most 2^53 - 1 bytes (just under 8 PiB) are counted`);
  if (!Number.isInteger(bytes)) throw new InvalidInputError(`invalid ${what} "${text}": not a whole number of bytes`);
  return bytes;
}

export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${bytes} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}
