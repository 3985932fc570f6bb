import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// `lock.token` is a bigint, which JSON.stringify refuses: the README's "Fencing tokens" says
// how to log and send it, and what it says must work.
const test = suite('token');
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const section = readme.split('\n## Fencing tokens\n')[1]?.split('\n## ')[0] ?? '';
/** A token as large as real ones get: microseconds since 1970, past 2^50. */
const token = 1_764_000_000_000_000n;

test('JSON.stringify refuses a bigint, which is why the README has to say something', () => {
  assert.throws(() => JSON.stringify({ token }), TypeError);
});

test('the README says how to write lock.token as text', () => {
  assert.ok(section, 'no "Fencing tokens" section');
  for (const way of ['String(lock.token)', 'lock.token.toString()', 'BigInt(']) {
    assert.ok(section.includes(way), `"Fencing tokens" does not mention ${way}`);
  }
});

test("the README's JSON replacer writes the token as its decimal string", () => {
  const shown = /`(JSON\.stringify\(value, [^`]+\))`/.exec(section)?.[1];
  assert.ok(shown, 'no JSON.stringify(value, replacer) in "Fencing tokens"');
  const stringify = new Function('value', `return ${shown};`) as (value: unknown) => string;
  const text = stringify({ name: 'account:7', token });
  assert.is(text, '{"name":"account:7","token":"1764000000000000"}');
  assert.is(BigInt(JSON.parse(text).token), token);
});

test.run();
