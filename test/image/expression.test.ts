import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/core/errors.js';
import { MAX_NESTING, MAX_PLANES, type ImageExpression, formatExpression, parseExpression } from '../../src/image/index.js';
import { SNAPSHOT_NAME_PATTERN } from '../../src/volume/snapshot-name.js';
import { anyExpressionArb, difference, intersection, plane, union } from './model.js';

function parseError(text: string): InvalidInputError {
  try {
    parseExpression(text);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    return err as InvalidInputError;
  }
  throw new Error(`parseExpression(${JSON.stringify(text)}) did not throw`);
}

describe('parseExpression', () => {
  it('reads the June example left to right: (june5 + june4) - june3', () => {
    expect(parseExpression('june5 + june4 - june3')).toEqual(
      difference(union(plane('june5'), plane('june4')), plane('june3')),
    );
  });

  it('binds & tighter than + and -', () => {
    expect(parseExpression('a + b & c')).toEqual(union(plane('a'), intersection(plane('b'), plane('c'))));
    expect(parseExpression('a & b - c')).toEqual(difference(intersection(plane('a'), plane('b')), plane('c')));
    expect(parseExpression('a & b & c')).toEqual(intersection(intersection(plane('a'), plane('b')), plane('c')));
  });

  it('is left-associative for + and -', () => {
    expect(parseExpression('a - b - c')).toEqual(difference(difference(plane('a'), plane('b')), plane('c')));
    expect(parseExpression('a - b + c')).toEqual(union(difference(plane('a'), plane('b')), plane('c')));
  });

  it('lets parentheses override precedence', () => {
    expect(parseExpression('(a + b) & c')).toEqual(intersection(union(plane('a'), plane('b')), plane('c')));
    expect(parseExpression('a - (b)')).toEqual(difference(plane('a'), plane('b')));
    expect(parseExpression('((a))')).toEqual(plane('a'));
  });

  it('lexes names greedily: a-b is one name, spaces make "-" an operator', () => {
    expect(parseExpression('a-b')).toEqual(plane('a-b'));
    expect(parseExpression('daily-2026-11-23 - daily-2026-11-22')).toEqual(
      difference(plane('daily-2026-11-23'), plane('daily-2026-11-22')),
    );
    expect(parseExpression('a -b')).toEqual(difference(plane('a'), plane('b')));
    expect(parseExpression('moa.0+vol:snap&_x')).toEqual(union(plane('moa.0'), intersection(plane('vol:snap'), plane('_x'))));
  });

  it('takes whitespace freely around operators and parentheses', () => {
    expect(parseExpression(' \t( a+b )\n&c ')).toEqual(intersection(union(plane('a'), plane('b')), plane('c')));
  });

  it.each([
    ['', 'malformed expression "": empty, expected a plane name at position 1'],
    ['   ', 'malformed expression "   ": empty, expected a plane name at position 4'],
    ['a + ', 'malformed expression "a + ": expected a plane name at position 5'],
    ['a -', 'malformed expression "a -": expected a plane name at position 4'],
    ['& a', 'malformed expression "& a": expected a plane name at position 1, found "&"'],
    ['a + + b', 'malformed expression "a + + b": expected a plane name at position 5, found "+"'],
    ['a & )', 'malformed expression "a & )": expected a plane name at position 5, found ")"'],
    ['()', 'malformed expression "()": expected a plane name at position 2, found ")"'],
    ['(a + b', 'malformed expression "(a + b": unclosed "(" at position 1: expected ")" at position 7'],
    ['((a) + b', 'malformed expression "((a) + b": unclosed "(" at position 1: expected ")" at position 9'],
    ['a + b)', 'malformed expression "a + b)": unmatched ")" at position 6'],
    ['(a b)', 'malformed expression "(a b)": expected an operator or ")" at position 4, found "b"'],
    ['a b', 'malformed expression "a b": expected an operator at position 3, found "b"'],
    ['a (b)', 'malformed expression "a (b)": expected an operator at position 3, found "("'],
    ['a * b', 'malformed expression "a * b": unexpected character "*" at position 3'],
    ['a + .b', 'malformed expression "a + .b": unexpected character "." at position 5'],
    ['a + -b', 'malformed expression "a + -b": expected a plane name at position 5, found "-"'],
    ['é + a', 'malformed expression "é + a": unexpected character "é" at position 1'],
    ['a\n+', 'malformed expression "a\\n+": expected a plane name at position 4'],
  ])('rejects %j', (text, message) => {
    const err = parseError(text);
    expect(err.message).toBe(message);
    expect(err.code).toBe('invalid-input');
    expect(err.hint).toMatch(/june5 \+ june4 - june3/);
    expect(err.hint, 'printed in parentheses: none of its own').not.toMatch(/[()]/);
    expect(err.message).not.toContain('\n');
  });

  it('counts positions in characters, not UTF-16 units', () => {
    expect(parseError('a + 😀').message).toBe('malformed expression "a + 😀": unexpected character "😀" at position 5');
    expect(parseError('😀 b').message).toContain('at position 1');
  });

  it('hints at spaces when a name swallowed a "-"', () => {
    const err = parseError('june4- june3');
    expect(err.message).toBe('malformed expression "june4- june3": expected an operator at position 8, found "june3"');
    expect(err.hint).toContain('"june4-" is read as one name');
  });

  it(`accepts ${MAX_NESTING} levels of parentheses and refuses one more`, () => {
    const nest = (k: number) => '('.repeat(k) + 'a' + ')'.repeat(k);
    expect(parseExpression(nest(MAX_NESTING))).toEqual(plane('a'));
    expect(parseError(nest(MAX_NESTING + 1)).message).toMatch(
      new RegExp(`parentheses nested deeper than ${MAX_NESTING} levels at position ${MAX_NESTING + 1}$`),
    );
  });

  it(`accepts ${MAX_PLANES} plane names and refuses more`, () => {
    const sum = (k: number) => Array.from({ length: k }, () => 'a').join(' + ');
    let e = parseExpression(sum(MAX_PLANES));
    let depth = 0;
    while (e.kind === 'union') [e, depth] = [e.left, depth + 1];
    expect(depth).toBe(MAX_PLANES - 1);
    expect(parseError(sum(MAX_PLANES + 1)).message).toMatch(
      new RegExp(`: more than ${MAX_PLANES} plane names, at position ${MAX_PLANES * 4 + 1}$`),
    );
  });

  it('never throws anything but InvalidInputError with a position, and what it accepts prints back to itself', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'b', '1', '-', '.', '+', '&', '(', ')', ' ', '*'), maxLength: 24 });
    fc.assert(
      fc.property(text, (t) => {
        let ast: ImageExpression;
        try {
          ast = parseExpression(t);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidInputError);
          const m = /at position (\d+)/.exec((err as Error).message);
          expect(m).not.toBeNull();
          expect(Number(m![1])).toBeGreaterThanOrEqual(1);
          expect(Number(m![1])).toBeLessThanOrEqual(t.length + 1);
          return;
        }
        expect(parseExpression(formatExpression(ast))).toEqual(ast);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('formatExpression', () => {
  it.each([
    ['june5 + june4 - june3', 'june5 + june4 - june3'],
    ['(june5 + june4) - june3', 'june5 + june4 - june3'],
    ['a - (b + c)', 'a - (b + c)'],
    ['a + (b + c)', 'a + (b + c)'],
    ['a + (b & c)', 'a + b & c'],
    ['(a + b) & c', '(a + b) & c'],
    ['a & (b & c)', 'a & (b & c)'],
    ['(a & b) & c', 'a & b & c'],
    ['(a - s) + (b - t)', 'a - s + (b - t)'],
    ['((a))', 'a'],
    ['a-b&(c)', 'a-b & c'],
  ])('prints %j as %j', (text, canonical) => {
    expect(formatExpression(parseExpression(text))).toBe(canonical);
  });

  it('round-trips: parse(format(ast)) equals ast for random expressions and names', () => {
    const name = fc.stringMatching(SNAPSHOT_NAME_PATTERN, { maxLength: 12 });
    fc.assert(
      fc.property(anyExpressionArb(name), (ast) => {
        expect(parseExpression(formatExpression(ast))).toEqual(ast);
      }),
      { numRuns: 1000 },
    );
  });

  it('reads the same tree whatever whitespace and redundant parentheses surround it', () => {
    const name = fc.constantFrom('a', 'june-5', 'moa.0', '7');
    const ws = fc.constantFrom('', ' ', '  ', '\t', '\n');
    const sp = fc.constantFrom(' ', '  ', '\t', '\n'); // around operators: a name could swallow a "-"
    fc.assert(
      fc.property(anyExpressionArb(name), fc.infiniteStream(fc.tuple(ws, sp, fc.boolean())), (ast, layout) => {
        const print = (e: ImageExpression, parent: number, right: boolean): string => {
          const [pad, gap, extraParens] = layout.next().value as [string, string, boolean];
          if (e.kind === 'plane') return extraParens ? `(${pad}${e.name}${pad})` : `${pad}${e.name}${pad}`;
          const p = e.kind === 'intersection' ? 2 : 1;
          const op = e.kind === 'union' ? '+' : e.kind === 'difference' ? '-' : '&';
          const body = `${print(e.left, p, false)}${gap}${op}${gap}${print(e.right, p, true)}`;
          return extraParens || p < parent || (right && p === parent) ? `(${pad}${body}${pad})` : body;
        };
        expect(parseExpression(print(ast, 0, false))).toEqual(ast);
      }),
      { numRuns: 500 },
    );
  });
});
