import calculateSlot from 'cluster-key-slot';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  besideQueueNames,
  fenceKey,
  handoffKey,
  keyNames,
  parseKey,
  queueKey,
  rolesKey,
  type SemaphoreKind,
  type SemaphoreNames,
  semaphoreNames,
  slotFenceKey,
  ticketKey,
  wakeKey,
} from '../src/shared/keys.js';
import { checkLimit, checkPermits, MAX_SEMAPHORE_LIMIT } from '../src/shared/limits.js';

// Issue 16, step 1 of docs/design/semaphores.md: the keys of semaphores and read-write locks,
// and the checks of their limit and permits (nothing public uses them yet).
const test = suite('semaphore keys and limits');

const PREFIX = 'rueidislock';
// Names meant to break a layout: braces in every place, separators, the mutex's letters.
const NAMES = ['a', 'a}b', '{x}', '}', '{', 'a:b', 's', 'rw', '0', 'q', 'x}:h', 'é{}', 'a}:o:v'];
const VALUE = '4bd1f2a0-6d8e-4c53-9b1c-0f3e7b2a9c11';

function keysOf(names: SemaphoreNames): string[] {
  const { queue } = names;
  return [
    names.meta,
    names.holders,
    `${names.owns}${VALUE}`,
    names.fence,
    queue.queueKey,
    queue.rolesKey,
    `${queue.tickets}${VALUE}`,
    `${queue.wakes}${VALUE}`,
    `${queue.handoffs}${VALUE}`,
    names.writers,
  ];
}

function mutexKeys(name: string): string[] {
  const beside = besideQueueNames(`${PREFIX}:0:${name}`);
  return [
    ...keyNames(PREFIX, name, 63),
    queueKey(PREFIX, name),
    rolesKey(PREFIX, name),
    fenceKey(PREFIX, name),
    ticketKey(PREFIX, VALUE),
    wakeKey(PREFIX, VALUE),
    handoffKey(PREFIX, VALUE),
    slotFenceKey(`${PREFIX}:0:${name}`),
    beside.queueKey,
    beside.rolesKey,
    `${beside.tickets}${VALUE}`,
    `${beside.wakes}${VALUE}`,
    `${beside.handoffs}${VALUE}`,
  ];
}

test('no key of a semaphore or read-write lock is a mutex key, or another kind or name’s key', () => {
  const owner = new Map<string, string>();
  for (const name of NAMES) {
    for (const key of mutexKeys(name)) owner.set(key, `mutex ${name}`);
  }
  for (const kind of ['s', 'rw'] as SemaphoreKind[]) {
    for (const name of NAMES) {
      for (const key of keysOf(semaphoreNames(PREFIX, kind, name))) {
        const other = owner.get(key);
        assert.is(other, undefined, `${kind} ${name}: ${key} is also a key of ${other}`);
        owner.set(key, `${kind} ${name}`);
        assert.is(parseKey(PREFIX, key), undefined, `${key} reads as a mutex key`);
      }
    }
  }
});

test('every key of one semaphore is in one cluster slot, whatever braces its name holds', () => {
  for (const kind of ['s', 'rw'] as SemaphoreKind[]) {
    for (const name of NAMES) {
      const slots = new Set(keysOf(semaphoreNames(PREFIX, kind, name)).map(calculateSlot));
      assert.is(slots.size, 1, `${kind} ${name}: slots ${[...slots].join(', ')}`);
    }
  }
});

test('limit is a whole number of permits from 1 to MAX_SEMAPHORE_LIMIT, else an error naming it', () => {
  for (const limit of [1, 3, MAX_SEMAPHORE_LIMIT]) checkLimit(limit);
  for (const limit of [0, -1, 1.5, Number.NaN, Infinity, MAX_SEMAPHORE_LIMIT + 1]) {
    assert.throws(
      () => checkLimit(limit),
      (error: Error) => {
        return error instanceof RangeError && error.message.startsWith('limit must');
      },
    );
  }
  for (const limit of ['3', undefined, null, 3n]) {
    assert.throws(
      () => checkLimit(limit),
      (error: Error) => {
        return error instanceof TypeError && error.message.startsWith('limit must');
      },
    );
  }
});

test('permits is a whole number from 1 to the limit, else an error naming both', () => {
  checkPermits(1, 3);
  checkPermits(3, 3);
  for (const permits of [0, 4, 2.5, Number.NaN]) {
    assert.throws(
      () => checkPermits(permits, 3),
      (error: Error) => {
        return error instanceof RangeError && /^permits must .*\(3\)/.test(error.message);
      },
    );
  }
  assert.throws(() => checkPermits('2', 3), TypeError);
});

test.run();
