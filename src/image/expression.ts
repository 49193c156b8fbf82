// Storage image expressions: the small language that names a set of VBNs, e.g.
// `june5 + june4 - june3`. Pure: text in, tree out, and back again.
//
//   expr   := term (('+' | '-') term)*     left-associative; '+' union, '-' difference
//   term   := factor ('&' factor)*         '&' intersection binds tighter
//   factor := NAME | '(' expr ')'
//
// NAME is lexed greedily with the snapshot-name pattern, and '-' may continue a name, so
// `a-b` is ONE name: operators need spaces around them wherever a name could swallow them.
import { InvalidInputError } from '../core/errors.js';
import { NAME_CONTINUE, NAME_START } from '../volume/snapshot-name.js';

export type BinaryKind = 'union' | 'difference' | 'intersection';

export interface PlaneNode {
  readonly kind: 'plane';
  readonly name: string;
}

export interface BinaryNode {
  readonly kind: BinaryKind;
  readonly left: ImageExpression;
  readonly right: ImageExpression;
}

export type ImageExpression = PlaneNode | BinaryNode;

export const OPERATOR_SYMBOL: Readonly<Record<BinaryKind, string>> = { union: '+', difference: '-', intersection: '&' };
const KIND_OF_SYMBOL: Readonly<Record<string, BinaryKind>> = { '+': 'union', '-': 'difference', '&': 'intersection' };
const PRECEDENCE: Readonly<Record<ImageExpression['kind'], number>> = { union: 1, difference: 1, intersection: 2, plane: 3 };

/** Parentheses nest at most this deep: bounds the parser's recursion on hostile input. */
export const MAX_NESTING = 100;
/** At most this many plane names: bounds the tree's depth (and a volume has fewer planes). */
export const MAX_PLANES = 1000;

const EXPRESSION_HINT =
  'join plane names with "+" for union, "-" for difference and "&" for intersection, with spaces around operators, e.g. "june5 + june4 - june3"';

type TokenType = 'name' | '+' | '-' | '&' | '(' | ')' | 'end';
interface Token {
  readonly type: TokenType;
  readonly text: string;
  /** 1-based character position in the expression. */
  readonly pos: number;
}

/** Parses an expression; throws InvalidInputError naming the problem and its position. */
export function parseExpression(text: string): ImageExpression {
  return new Parser(text).parse();
}

/** Prints an expression canonically: spaces around operators, only the parentheses needed. */
export function formatExpression(expr: ImageExpression): string {
  if (expr.kind === 'plane') return expr.name;
  const p = PRECEDENCE[expr.kind];
  // Left-associative: a left operand needs parentheses only when it binds looser, a
  // right operand also when it binds equally (a - (b + c), a & (b & c)).
  const left = formatExpression(expr.left);
  const right = formatExpression(expr.right);
  return `${PRECEDENCE[expr.left.kind] < p ? `(${left})` : left} ${OPERATOR_SYMBOL[expr.kind]} ${
    PRECEDENCE[expr.right.kind] <= p ? `(${right})` : right
  }`;
}

/** Characters of an expression an error quotes at most: the problem's position says where the rest is. */
const QUOTED_CHARS = 200;

function malformed(text: string, problem: string, hint = EXPRESSION_HINT): InvalidInputError {
  // JSON quoting keeps the message on one line whatever the input holds; a long one is cut
  const quoted = text.length > QUOTED_CHARS ? `${JSON.stringify(text.slice(0, QUOTED_CHARS))}… (${text.length} characters)` : JSON.stringify(text);
  return new InvalidInputError(`malformed expression ${quoted}: ${problem}`, hint);
}

function lex(text: string): Token[] {
  // Positions count characters (code points), as a user would.
  const chars = Array.from(text);
  const tokens: Token[] = [];
  let names = 0;
  let i = 0;
  while (i < chars.length) {
    const ch = chars[i];
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === '+' || ch === '-' || ch === '&' || ch === '(' || ch === ')') {
      tokens.push({ type: ch as TokenType, text: ch, pos: i + 1 });
      i++;
    } else if (NAME_START.test(ch)) {
      const start = i;
      i++;
      while (i < chars.length && NAME_CONTINUE.test(chars[i])) i++;
      if (++names > MAX_PLANES) throw malformed(text, `more than ${MAX_PLANES} plane names, at position ${start + 1}`);
      tokens.push({ type: 'name', text: chars.slice(start, i).join(''), pos: start + 1 });
    } else {
      throw malformed(text, `unexpected character ${JSON.stringify(ch)} at position ${i + 1}`);
    }
  }
  tokens.push({ type: 'end', text: '', pos: chars.length + 1 });
  return tokens;
}

class Parser {
  private readonly tokens: Token[];
  private next = 0;

  constructor(private readonly text: string) {
    this.tokens = lex(text);
  }

  parse(): ImageExpression {
    if (this.tokens.length === 1) {
      throw malformed(this.text, `empty, expected a plane name at position ${this.tokens[0].pos}`);
    }
    const expr = this.expr(0);
    const t = this.peek();
    if (t.type === ')') throw malformed(this.text, `unmatched ")" at position ${t.pos}`);
    if (t.type !== 'end') throw this.expectedOperator(t, 'an operator');
    return expr;
  }

  private peek(): Token {
    return this.tokens[this.next];
  }

  private take(): Token {
    return this.tokens[this.next++];
  }

  private expr(depth: number): ImageExpression {
    let left = this.term(depth);
    for (let t = this.peek(); t.type === '+' || t.type === '-'; t = this.peek()) {
      this.take();
      left = { kind: KIND_OF_SYMBOL[t.type], left, right: this.term(depth) };
    }
    return left;
  }

  private term(depth: number): ImageExpression {
    let left = this.factor(depth);
    while (this.peek().type === '&') {
      this.take();
      left = { kind: 'intersection', left, right: this.factor(depth) };
    }
    return left;
  }

  private factor(depth: number): ImageExpression {
    const t = this.take();
    if (t.type === 'name') return { kind: 'plane', name: t.text };
    if (t.type === '(') {
      if (depth >= MAX_NESTING) {
        throw malformed(this.text, `parentheses nested deeper than ${MAX_NESTING} levels at position ${t.pos}`);
      }
      const inner = this.expr(depth + 1);
      const close = this.peek();
      if (close.type === 'end') {
        throw malformed(this.text, `unclosed "(" at position ${t.pos}: expected ")" at position ${close.pos}`);
      }
      if (close.type !== ')') throw this.expectedOperator(close, 'an operator or ")"');
      this.take();
      return inner;
    }
    if (t.type === 'end') throw malformed(this.text, `expected a plane name at position ${t.pos}`);
    throw malformed(this.text, `expected a plane name at position ${t.pos}, found "${t.text}"`);
  }

  /** A name or "(" where an operator belongs: most often "a- b", where "a-" is read as one name. */
  private expectedOperator(t: Token, what: string): InvalidInputError {
    const prev = this.tokens[this.next - 1];
    const hint =
      prev?.type === 'name' && prev.text.includes('-')
        ? `"${prev.text}" is read as one name because "-" may continue a name: put spaces around "-" when it is an operator`
        : EXPRESSION_HINT;
    return malformed(this.text, `expected ${what} at position ${t.pos}, found "${t.text}"`, hint);
  }
}
