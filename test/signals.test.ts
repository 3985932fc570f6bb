import { getEventListeners } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { linkSignals, onAbort } from '../src/shared/signals.js';

// One listener per caller's signal, however many calls share it.
const test = suite('signals');

test('any number of hooks on one signal add one listener, and unhooking them all removes it', () => {
  const controller = new AbortController();
  const unhooks = Array.from({ length: 50 }, () => onAbort(controller.signal, () => {}));
  assert.is(getEventListeners(controller.signal, 'abort').length, 1);
  for (const unhook of unhooks) unhook();
  assert.is(getEventListeners(controller.signal, 'abort').length, 0);
});

test('every hook still hooked is called once, with a hook unhooked by another skipped', () => {
  const controller = new AbortController();
  const called: string[] = [];
  let unhookB = () => {};
  onAbort(controller.signal, () => {
    called.push('a');
    unhookB();
  });
  unhookB = onAbort(controller.signal, () => called.push('b'));
  onAbort(controller.signal, () => called.push('c'));
  const unhookD = onAbort(controller.signal, () => called.push('d'));
  unhookD();
  unhookD(); // twice is harmless
  controller.abort();
  assert.equal(called, ['a', 'c']);
  let late = 0;
  onAbort(controller.signal, () => late++);
  assert.is(late, 1, 'a hook on an aborted signal runs at once');
});

test('a hook that throws does not keep the others from running', async () => {
  const controller = new AbortController();
  const called: string[] = [];
  const uncaught = new Promise<unknown>((resolve) => {
    process.prependOnceListener('uncaughtException', resolve);
  });
  onAbort(controller.signal, () => {
    throw new Error('boom');
  });
  onAbort(controller.signal, () => called.push('after'));
  controller.abort();
  assert.equal(called, ['after']);
  assert.match(String(await uncaught), /boom/);
});

test('a linked signal aborts with the first input\u2019s reason, and disposing unhooks it', () => {
  const a = new AbortController();
  const b = new AbortController();
  const link = linkSignals([a.signal, undefined, b.signal]);
  b.abort('b first');
  a.abort('a later');
  assert.is(link.signal.reason, 'b first');
  const c = new AbortController();
  const other = linkSignals([c.signal]);
  other.dispose();
  assert.is(getEventListeners(c.signal, 'abort').length, 0);
});

test('a caller’s listener that stops the abort event does not hide it from the hooks', () => {
  const controller = new AbortController();
  controller.signal.addEventListener('abort', (event) => event.stopImmediatePropagation());
  let called = false;
  onAbort(controller.signal, () => {
    called = true;
  });
  controller.abort();
  assert.ok(called);
});

test.run();
