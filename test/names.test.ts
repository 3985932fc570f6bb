/**
 * Bad input at scale: many names at once, names with the key layout's separator, braces,
 * whitespace and non-ASCII, very long names, and lone UTF-16 surrogates. Each test runs
 * against a redis-server of this suite's own.
 */
import { abortable } from 'abort-controller-x';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Lock, type LockError, type Locker } from '../src/index.js';
import { fenceKey, keyNames, MAX_NAME_BYTES, parseKey, queueKey } from '../src/shared/keys.js';
import { type Client, calls, connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { until } from './helpers/wait.js';

const test = suite<{ server: RedisServer; client: Client }>('names');

const PREFIX = 'rueidislock';
/**
 * Keys outlive the test (a waiter that missed a push would sleep until they expire, past its
 * waitTimeoutMs), and a loaded machine gets room: an extension every 15 s, 10 s per command.
 */
const OPTIONS = { keyValidityMs: 30_000, commandTimeoutMs: 10_000 } as const;

/** Print the measured times and heap when NAMES_VERBOSE is set; nothing is asserted on them. */
const report = (line: string) => {
  if (process.env.NAMES_VERBOSE) console.log(`  names: ${line}`);
};

test.before(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.client = await connect(ctx.server.url);
});

test.after(async (ctx) => {
  await ctx.client?.close();
  await ctx.server?.stop();
});

// Every test starts from an empty server (fence keys of earlier tests expire by themselves).
test.before.each(async ({ client }) => {
  await client.flushAll();
});

/** Every key on the server that matches `pattern` (SCAN may repeat a key: a set). */
async function scan(client: Client, pattern: string): Promise<Set<string>> {
  const keys = new Set<string>();
  for await (const batch of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
    for (const key of batch) keys.add(key);
  }
  return keys;
}

/** The lock keys (not fence, queue or ticket keys) on the server. */
const lockKeys = (client: Client) => scan(client, `${PREFIX}:[0-9]*`);

/** The value all of `name`'s keys hold, or a description of what they hold instead. */
async function holder(client: Client, name: string): Promise<string> {
  const values = await client.mGet(keyNames(PREFIX, name, 3));
  const [first] = values;
  return typeof first === 'string' && values.every((value) => value === first)
    ? first
    : `not one holder: ${JSON.stringify(values)}`;
}

/** What `locker.tryWithContext(name)` came to: 'held' (then released again) or the error code. */
async function tryOnce(locker: Locker, name: string): Promise<string> {
  return locker.tryWithContext(name).then(
    async (lock) => {
      await lock.release();
      return 'held';
    },
    (error: unknown) => (error as LockError).code ?? String(error),
  );
}

const show = (name: string) => JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);

/**
 * Names that look like parts of the key layout `${prefix}:${i}:${name}`, or like other keys of
 * the library (`:f:` fence, `:q:` queue, `:t:` ticket, `:h:` handoff), braces, whitespace,
 * control characters, glob and format characters, names that are also Object.prototype's, and
 * non-ASCII.
 */
const TRICKY = [
  'x',
  '1:x',
  '0:x',
  '0:1:x',
  '1:0:x',
  '10:x',
  ':x',
  'x:',
  ':',
  '::',
  '0',
  '1',
  'f:x',
  'q:x',
  't:x',
  'h:x',
  `${PREFIX}:0:x`,
  '{x}',
  '{}',
  '}{',
  '{tag}:x',
  'a{tag}b',
  ' ',
  'a b',
  ' x',
  'x ',
  'tab\there',
  'new\nline',
  'cr\r\nlf',
  'nul\0byte',
  '\u0007\u001b[0m',
  '*',
  '?',
  '[a-z]',
  '\\',
  '"',
  "'",
  '%s',
  '$1',
  '__proto__',
  'constructor',
  'hasOwnProperty',
  'naïve',
  '日本',
  '🔒',
  '🔒:🔑',
  'עברית',
  '\u200b',
  'x\u200b',
  '\ufffd',
  '\ufeffx',
];

test('the key layout gives different names different keys: the index ends at the first colon', () => {
  assert.is(new Set(TRICKY).size, TRICKY.length, 'the names themselves are distinct');
  // `${prefix}:${i}:${name}`: `i` is digits only, so the first colon after the prefix ends it and
  // the rest is the name, whatever colons it has: (i, name) is read back from the key, so two
  // different pairs never make one key. Fence, queue, ticket and handoff keys have a letter
  // where the index is, so they never make a lock key either. Checked for up to 11 keys (an
  // index of two digits) and every pair of these names.
  const owners = new Map<string, string>();
  const own = (key: string, owner: string) => {
    const other = owners.get(key);
    assert.ok(other === undefined, `${owner} and ${other} share the key ${JSON.stringify(key)}`);
    owners.set(key, owner);
  };
  for (const name of TRICKY) {
    keyNames(PREFIX, name, 11).forEach((key, index) => {
      own(key, `key ${index} of ${show(name)}`);
      assert.equal(parseKey(PREFIX, key), { index, name });
    });
    own(fenceKey(PREFIX, name), `the fence of ${show(name)}`);
    own(queueKey(PREFIX, name), `the queue of ${show(name)}`);
    assert.is(parseKey(PREFIX, fenceKey(PREFIX, name)), undefined);
    assert.is(parseKey(PREFIX, queueKey(PREFIX, name)), undefined);
  }
  // The pair the layout seems to invite: key 1 of 'x' and key 0 of '1:x'.
  assert.is(keyNames(PREFIX, 'x', 3)[1], 'rueidislock:1:x');
  assert.is(keyNames(PREFIX, '1:x', 3)[0], 'rueidislock:0:1:x');
});

test('names with colons, braces, whitespace, control characters and non-ASCII are locks of their own, all held at once', async ({
  server,
  client,
}) => {
  const deadline = AbortSignal.timeout(60_000);
  const [a, b] = await Promise.all([
    createLocker({ url: server.url, ...OPTIONS }),
    createLocker({ url: server.url, ...OPTIONS }),
  ]);
  try {
    const locks = await abortable(
      deadline,
      Promise.all(TRICKY.map((name) => a.tryWithContext(name))),
    );
    // Each name has three keys of its own, with one value: no two names share a key.
    const expected = new Set(TRICKY.flatMap((name) => keyNames(PREFIX, name, 3)));
    assert.equal(await lockKeys(client), expected);
    const values = await Promise.all(TRICKY.map((name) => holder(client, name)));
    assert.is(new Set(values).size, TRICKY.length, values.join('\n'));
    for (const name of TRICKY) {
      assert.is(await tryOnce(b, name), 'ERR_NOT_LOCKED', show(name));
    }
    // Release every other one ('x' but not '1:x', '0:x' but not '0:1:x', …): only those go.
    for (const [i, lock] of locks.entries()) {
      if (i % 2 === 0) assert.is(await lock.release(), true);
    }
    for (const [i, name] of TRICKY.entries()) {
      assert.is(await tryOnce(b, name), i % 2 === 0 ? 'held' : 'ERR_NOT_LOCKED', show(name));
    }
    for (const [i, lock] of locks.entries()) {
      assert.is(lock.signal.aborted, i % 2 === 0, show(lock.name));
      if (i % 2 === 1) assert.is(await lock.release(), true);
    }
    assert.is((await lockKeys(client)).size, 0);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('a waiter on such a name is woken by the push when the holder lets go, not by the keys expiring', async ({
  server,
  client,
}) => {
  const deadline = AbortSignal.timeout(60_000);
  const [a, b] = await Promise.all([
    createLocker({ url: server.url, ...OPTIONS }),
    createLocker({ url: server.url, ...OPTIONS }),
  ]);
  try {
    const held = await abortable(
      deadline,
      Promise.all(TRICKY.map((name) => a.tryWithContext(name))),
    );
    const before = await calls(client, 'evalsha');
    // The keys live 30 s: a waiter that did not hear the invalidation of its name's keys would
    // sleep until then, and its waitTimeoutMs ends the wait first.
    const waiting = TRICKY.map((name) => b.withContext(name, { waitTimeoutMs: 20_000 }));
    for (const wait of waiting) wait.catch(() => {});
    // Every waiter's first attempt has run (and found its lock taken) before the holder lets go.
    await until(async () => (await calls(client, 'evalsha')) >= before + TRICKY.length, deadline);
    await Promise.all(held.map((lock) => lock.release()));
    const taken = await abortable(deadline, Promise.all(waiting));
    assert.equal(
      taken.map((lock) => lock.name),
      TRICKY,
    );
    const values = await Promise.all(TRICKY.map((name) => holder(client, name)));
    assert.is(new Set(values).size, TRICKY.length, values.join('\n'));
    await Promise.all(taken.map((lock) => lock.release()));
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('names that differ only by Unicode normalization or case are different locks', async ({
  server,
  client,
}) => {
  const [a, b] = await Promise.all([
    createLocker({ url: server.url, ...OPTIONS }),
    createLocker({ url: server.url, ...OPTIONS }),
  ]);
  // 'é' composed (NFC) and decomposed (NFD); 'Å' as a letter, as the ångström sign, and
  // decomposed; 'A', 'a' and the fullwidth 'Ａ' (the same under NFKC).
  const alike = [
    ['caf\u00e9', 'cafe\u0301'],
    ['\u00c5', '\u212b', 'A\u030a'],
    ['A', 'a', '\uff21'],
  ];
  assert.is('caf\u00e9'.normalize('NFD'), 'cafe\u0301');
  assert.is('\u212b'.normalize('NFC'), '\u00c5');
  try {
    for (const names of alike) {
      // One locker holds the first spelling; the other takes every other spelling at once.
      const first = await a.tryWithContext(names[0] as string);
      const others = await Promise.all(names.slice(1).map((name) => b.tryWithContext(name)));
      const values = await Promise.all(names.map((name) => holder(client, name)));
      assert.is(new Set(values).size, names.length, values.join('\n'));
      assert.is(await tryOnce(b, names[0] as string), 'ERR_NOT_LOCKED');
      for (const name of names.slice(1)) assert.is(await tryOnce(a, name), 'ERR_NOT_LOCKED');
      for (const lock of [first, ...others]) assert.is(await lock.release(), true);
    }
    assert.is((await lockKeys(client)).size, 0);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('lone surrogates are refused with a TypeError before anything is written', async ({
  server,
  client,
}) => {
  // Why: on the wire (UTF-8) every lone surrogate becomes U+FFFD, so these different strings
  // would all be one key.
  const lone = ['\ud800', '\udc00', '\udfff', 'a\ud800', '\udc00b', 'x\ud800y', '\udd12\ud83d'];
  for (const name of lone) {
    assert.ok(Buffer.from(`k:${name}`).includes(Buffer.from('\ufffd')), show(name));
  }
  assert.ok(Buffer.from('\ud800').equals(Buffer.from('\udc00')));
  assert.ok(Buffer.from('\ud800').equals(Buffer.from('\ufffd')));
  const locker = await createLocker({ url: server.url, ...OPTIONS });
  try {
    const before = await calls(client, 'evalsha');
    for (const name of [...lone, '\ud83d', 'ok \ud83d', `${'a'.repeat(100_000)}\ud800`]) {
      for (const call of [locker.withContext, locker.tryWithContext, locker.forceWithContext]) {
        const error = await call.call(locker, name).catch((e: unknown) => e);
        assert.instance(error, TypeError, show(name));
        assert.match((error as Error).message, 'well-formed');
      }
      let ran = false;
      const error = await locker
        .withLock(name, () => {
          ran = true;
        })
        .catch((e: unknown) => e);
      assert.instance(error, TypeError);
      assert.not.ok(ran);
    }
    assert.is(await client.dbSize(), 0);
    assert.is(await calls(client, 'evalsha'), before);
    // What they would have collided with, and a well-formed pair: different strings, different
    // UTF-8, different keys, all held at once.
    const wellFormed = ['\ufffd', '\ufffd\ufffd', 'a\ufffd', '\ud83d\udd12', '🔒'.normalize()];
    const locks = await Promise.all(wellFormed.slice(0, 4).map((n) => locker.tryWithContext(n)));
    assert.is(await tryOnce(locker, wellFormed[4] as string), 'ERR_NOT_LOCKED'); // 🔒 is \ud83d\udd12
    const values = await Promise.all(locks.map((lock) => holder(client, lock.name)));
    assert.is(new Set(values).size, 4, values.join('\n'));
    for (const lock of locks) assert.is(await lock.release(), true);
  } finally {
    await locker.close();
  }
});

test(`a name of up to ${MAX_NAME_BYTES} bytes of UTF-8 works; one byte more is a RangeError naming the limit`, async ({
  server,
  client,
}) => {
  const deadline = AbortSignal.timeout(120_000);
  assert.is(MAX_NAME_BYTES, 64 * 1024);
  // At the limit, in 1-, 3- and 4-byte characters (a 4-byte one is 2 UTF-16 code units).
  const atLimit = ['a'.repeat(MAX_NAME_BYTES), '日'.repeat(21_845), '🔒'.repeat(16_384)];
  // Over it; the last has fewer code units than the limit has bytes.
  const over = [
    'a'.repeat(MAX_NAME_BYTES + 1),
    `${'a'.repeat(MAX_NAME_BYTES - 1)}é`,
    '日'.repeat(21_846),
    '🔒'.repeat(16_385),
    'a'.repeat(10_000_000),
  ];
  assert.equal(
    atLimit.map((name) => Buffer.byteLength(name)),
    [MAX_NAME_BYTES, MAX_NAME_BYTES - 1, MAX_NAME_BYTES],
  );
  for (const name of over) assert.ok(Buffer.byteLength(name) > MAX_NAME_BYTES);
  assert.ok((over[3] as string).length < MAX_NAME_BYTES);
  const [a, b] = await Promise.all([
    createLocker({ url: server.url, ...OPTIONS }),
    createLocker({ url: server.url, ...OPTIONS }),
  ]);
  try {
    for (const name of over) {
      for (const call of [a.withContext, a.tryWithContext, a.forceWithContext]) {
        const error = await call.call(a, name).catch((e: unknown) => e);
        assert.instance(error, RangeError);
        assert.match((error as Error).message, `at most ${MAX_NAME_BYTES} bytes`);
        assert.match((error as Error).message, `got ${Buffer.byteLength(name)}`);
      }
    }
    assert.is(await client.dbSize(), 0);

    // Held together, each with keys of its own, excluding the other locker.
    const locks = await abortable(deadline, Promise.all(atLimit.map((n) => a.tryWithContext(n))));
    assert.equal(await lockKeys(client), new Set(atLimit.flatMap((n) => keyNames(PREFIX, n, 3))));
    for (const name of atLimit) {
      assert.is((await client.strLen(fenceKey(PREFIX, name))) > 0, true);
      assert.is(await tryOnce(b, name), 'ERR_NOT_LOCKED');
    }
    // A waiter hears the push that carries the 64 KiB key.
    const before = await calls(client, 'evalsha');
    const waiting = atLimit.map((name) => b.withContext(name, { waitTimeoutMs: 20_000 }));
    for (const wait of waiting) wait.catch(() => {});
    await until(async () => (await calls(client, 'evalsha')) >= before + atLimit.length, deadline);
    await Promise.all(locks.map((lock) => lock.release()));
    for (const lock of await abortable(deadline, Promise.all(waiting))) {
      assert.is(await lock.release(), true);
    }
    assert.is((await lockKeys(client)).size, 0);

    // What a name at the limit costs: acquire and release, one after the other.
    const rounds = 50;
    const started = performance.now();
    for (let i = 0; i < rounds; i++) {
      deadline.throwIfAborted();
      const lock = await a.tryWithContext(atLimit[0] as string);
      assert.is(await lock.release(), true);
    }
    const perRound = (performance.now() - started) / rounds;
    const short = performance.now();
    for (let i = 0; i < rounds; i++) {
      deadline.throwIfAborted();
      const lock = await a.tryWithContext('short');
      assert.is(await lock.release(), true);
    }
    const perShort = (performance.now() - short) / rounds;
    report(
      `a ${MAX_NAME_BYTES}-byte name: acquire + release ${perRound.toFixed(2)} ms (a short name: ${perShort.toFixed(2)} ms), mean of ${rounds}`,
    );
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

/** Every name's three keys are on the server, each name's with a value of its own. */
async function checkHeld(client: Client, names: string[], batch: number, deadline: AbortSignal) {
  assert.equal(await lockKeys(client), new Set(names.flatMap((name) => keyNames(PREFIX, name, 3))));
  const values = new Set<string>();
  for (let i = 0; i < names.length; i += batch) {
    deadline.throwIfAborted();
    const read = await Promise.all(names.slice(i, i + batch).map((n) => holder(client, n)));
    for (const value of read) values.add(value);
  }
  assert.is(values.size, names.length);
}

test('10,000 distinct names held at once by one locker, excluding another, released without a trace', async ({
  server,
  client,
}) => {
  const deadline = AbortSignal.timeout(300_000);
  const count = 10_000;
  const batch = 500;
  // Plain, non-ASCII, braced and colon-laden names, all distinct.
  const forms = [
    (i: number) => `job:${i}`,
    (i: number) => `ジョブ:${i}`,
    (i: number) => `{job} ${i} 🔒`,
    (i: number) => `${i}:job`,
  ];
  const names = Array.from({ length: count }, (_, i) =>
    (forms[i % forms.length] as (typeof forms)[0])(i),
  );
  assert.is(new Set(names).size, count);
  const gc = (globalThis as { gc?: () => void }).gc;
  // Extended every 6 s: the test holds them through an extension round.
  const options = { url: server.url, ...OPTIONS, keyValidityMs: 12_000 };
  const [a, b] = await Promise.all([createLocker(options), createLocker(options)]);
  try {
    // Warm up (scripts loaded, code compiled), so the heap measures the locks only.
    await (await a.tryWithContext('warm-up')).release();
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const locks: Lock[] = [];
    let acquireMs = 0;
    for (let i = 0; i < count; i += batch) {
      deadline.throwIfAborted();
      const acquiring = performance.now();
      const some = names.slice(i, i + batch);
      const taken = some.map((name) => a.withContext(name, { waitTimeoutMs: 60_000 }));
      locks.push(...(await abortable(deadline, Promise.all(taken))));
      acquireMs += performance.now() - acquiring;
      // Each drew a fencing token, kept in its name's fence key (it expires ten validities
      // after it was last written).
      assert.is(await client.exists(some.map((name) => fenceKey(PREFIX, name))), some.length);
    }
    gc?.();
    const heapHeld = process.memoryUsage().heapUsed;

    assert.is(locks.length, count);
    assert.ok(
      locks.every((lock) => !lock.signal.aborted && typeof lock.token === 'bigint'),
      'every lock held, with a token',
    );
    await checkHeld(client, names, batch, deadline);
    // Another locker finds them taken.
    const sample = names.filter((_, i) => i % 50 === 7);
    const codes = await abortable(deadline, Promise.all(sample.map((n) => tryOnce(b, n))));
    assert.equal(new Set(codes), new Set(['ERR_NOT_LOCKED']));
    // Held on through an extension of every lock: as many extensions as locks have run since.
    const extensions = await calls(client, 'evalsha');
    await until(async () => (await calls(client, 'evalsha')) >= extensions + count, deadline);
    assert.ok(
      locks.every((lock) => !lock.signal.aborted),
      'every lock still held',
    );
    assert.is((await lockKeys(client)).size, 3 * count);

    const releasing = performance.now();
    for (let i = 0; i < count; i += batch) {
      deadline.throwIfAborted();
      const released = locks.slice(i, i + batch).map((lock) => lock.release());
      assert.ok((await abortable(deadline, Promise.all(released))).every(Boolean));
    }
    const releaseMs = performance.now() - releasing;
    // What stays once the caller lets go of its handles (each holds its aborted signal).
    locks.length = 0;
    gc?.();
    const heapAfter = process.memoryUsage().heapUsed;

    // No lock key is left; only fence keys, which expire by themselves.
    assert.is((await lockKeys(client)).size, 0);
    const left = [...(await scan(client, '*'))].filter((key) => !key.startsWith(`${PREFIX}:f:`));
    assert.equal(left, []);
    assert.is(await tryOnce(b, names[123] as string), 'held');
    const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
    report(
      `${count} names: acquired in ${acquireMs.toFixed(0)} ms, released in ${releaseMs.toFixed(0)} ms (batches of ${batch}); heap ${mb(heapBefore)} before, +${mb(heapHeld - heapBefore)} held (${((heapHeld - heapBefore) / count).toFixed(0)} B a lock), +${mb(heapAfter - heapBefore)} after release${gc ? '' : ' (without --expose-gc: rough)'}`,
    );
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test.run();
