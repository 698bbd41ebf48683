/**
 * `$(VAR)` expansion as upstream's third_party/forked/golang/expansion: `$$` is
 * an escaped `$`, `$(NAME)` becomes the mapped value, an unknown or unclosed
 * reference stays verbatim.
 */
export type Mapping = (name: string) => string;

/** Looks `name` up in each map in turn; unknown names stay as `$(name)`. */
export function mappingFor(...contexts: ReadonlyMap<string, string>[]): Mapping {
  return (name) => {
    for (const ctx of contexts) {
      const v = ctx.get(name);
      if (v !== undefined) return v;
    }
    return `$(${name})`;
  };
}

function tryReadVariableName(input: string): [read: string, isVar: boolean, advance: number] {
  const first = input[0];
  if (first === '$') return [first, false, 1];
  if (first === '(') {
    for (let i = 1; i < input.length; i++) if (input[i] === ')') return [input.slice(1, i), true, i + 1];
    return ['$(', false, 1];
  }
  return ['$' + (first ?? ''), false, 1];
}

export function expand(input: string, mapping: Mapping): string {
  let out = '';
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] === '$' && cursor + 1 < input.length) {
      out += input.slice(checkpoint, cursor);
      const [read, isVar, advance] = tryReadVariableName(input.slice(cursor + 1));
      out += isVar ? mapping(read) : read;
      cursor += advance;
      checkpoint = cursor + 1;
    }
  }
  return out + input.slice(checkpoint);
}
