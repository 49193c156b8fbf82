// The arguments of a command that takes any number of them, in the order given. oclif's
// parsed `argv` moves a repeated argument next to its first occurrence (`a b c b` comes
// back as `a b b c`), and order is meaning here: `verify L0 L1 L2 L1` checks a chain.
// The raw tokens keep it.
interface RawToken {
  type: string;
  input: string;
}

export function argumentsInOrder(raw: RawToken[]): string[] {
  return raw.filter((t) => t.type === 'arg').map((t) => t.input);
}
