import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// `lock.token` is a bigint, which JSON.stringify refuses: docs/fencing.md's "Tokens in JSON and
// SQL" (which the README's "Fencing tokens" links to) says how to log and send it, and what it
// says must work.
const test = suite('token');
const doc = readFileSync(new URL('../docs/fencing.md', import.meta.url), 'utf8');
const section = doc.split('\n## Tokens in JSON and SQL\n')[1]?.split('\n## ')[0] ?? '';
/** A token as large as real ones get: microseconds since 1970, past 2^50. */
const token = 1_764_000_000_000_000n;

test('JSON.stringify refuses a bigint, which is why the README has to say something', () => {
  assert.throws(() => JSON.stringify({ token }), TypeError);
});

test('the docs say how to write lock.token as text', () => {
  assert.ok(section, 'no "Tokens in JSON and SQL" section');
  for (const way of ['String(lock.token)', 'lock.token.toString()', 'BigInt(']) {
    assert.ok(section.includes(way), `"Tokens in JSON and SQL" does not mention ${way}`);
  }
});

test("the docs' JSON replacer writes the token as its decimal string", () => {
  const shown = /`(JSON\.stringify\(value, [^`]+\))`/.exec(section)?.[1];
  assert.ok(shown, 'no JSON.stringify(value, replacer) in "Tokens in JSON and SQL"');
  const stringify = new Function('value', `return ${shown};`) as (value: unknown) => string;
  const text = stringify({ name: 'account:7', token });
  assert.is(text, '{"name":"account:7","token":"1764000000000000"}');
  assert.is(BigInt(JSON.parse(text).token), token);
});

test.run();
