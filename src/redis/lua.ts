import { createHash } from 'node:crypto';

// How a Lua script is declared (its KEYS and ARGV by name, what its reply becomes) and sent.
// The scripts themselves, and the list that is loaded at connect, are in scripts.ts.

/**
 * Where a script's KEYS or ARGV come from, in declaration order: `one` string, a `list` spread
 * in its place, or an `optional` string. The scripts tell an absent optional one by the count
 * (`#KEYS`, a nil ARGV), so once one is left out, every later one must be too.
 */
type Slot = 'one' | 'list' | 'optional';
export type Layout = Readonly<Record<string, Slot>>;

/** The values a call gives for a layout, by name. */
export type Given<L extends Layout> = {
  readonly [P in keyof L as L[P] extends 'optional' ? never : P]: L[P] extends 'list'
    ? readonly string[]
    : string;
} & {
  readonly [P in keyof L as L[P] extends 'optional' ? P : never]?: string | undefined;
};

/**
 * A Lua script with its KEYS and ARGV declared by name, in order, and what its reply becomes.
 * Sent by SHA1 first, by body when the server has not seen it (see `runScript`).
 */
export interface Script<K extends Layout, A extends Layout, R> {
  readonly name: string;
  readonly keys: K;
  readonly args: A;
  readonly source: string;
  readonly sha: string;
  /** The reply, as the caller reads it (given the keys the call named). */
  readonly reply: (raw: unknown, keys: Given<K>) => R;
}

export function defineScript<const K extends Layout, const A extends Layout, R>(
  name: string,
  spec: { keys: K; args: A; reply: (raw: unknown, keys: Given<K>) => R },
  source: string,
): Script<K, A, R> {
  return { name, ...spec, source, sha: createHash('sha1').update(source).digest('hex') };
}

/** The named values, flattened in the layout's order; a missing one, or a gap, throws. */
function flatten(script: string, layout: Layout, given: Readonly<Record<string, unknown>>) {
  const flat: string[] = [];
  let skipped: string | undefined;
  for (const [name, slot] of Object.entries(layout)) {
    const value = given[name];
    if (value === undefined) {
      if (slot !== 'optional') throw new TypeError(`script ${script}: no ${name} given`);
      skipped ??= name;
    } else if (skipped !== undefined) {
      throw new TypeError(`script ${script}: ${name} given without ${skipped}`);
    } else if (slot === 'list') {
      flat.push(...(value as readonly string[]));
    } else {
      flat.push(value as string);
    }
  }
  return flat;
}

/**
 * Sends one command to the server that holds `firstKey` (every key of a call lives on one
 * server, in one cluster slot) and resolves with its reply.
 */
export type Send = (args: string[], firstKey: string) => Promise<unknown>;

/** Sends one command to the one server a connection check is about. */
export type SendTo = (args: string[]) => Promise<unknown>;

/** EVALSHA, and EVAL when the server lost its script cache (restart, SCRIPT FLUSH). */
export async function runScript<K extends Layout, A extends Layout, R>(
  send: Send,
  script: Script<K, A, R>,
  keys: Given<K>,
  args: Given<A>,
): Promise<R> {
  const flatKeys = flatten(script.name, script.keys, keys);
  const tail = [String(flatKeys.length), ...flatKeys, ...flatten(script.name, script.args, args)];
  const first = flatKeys[0] as string;
  const raw = await send(['EVALSHA', script.sha, ...tail], first).catch((error: unknown) => {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    return send(['EVAL', script.source, ...tail], first);
  });
  return script.reply(raw, keys);
}
