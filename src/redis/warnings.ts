import type { ResolvedOptions } from '../shared/options.js';

/**
 * The warnings already emitted, per locker: `resolveOptions` makes one topology object per
 * `createLocker`, and the options of each of its servers, spread from the locker's, share it.
 * So a locker on several servers that all say the same warns once, not once per server.
 */
const emitted = new WeakMap<object, Set<string>>();

/** `process.emitWarning(message)` with `code`, unless this locker has emitted that code. */
export function warnOnce(options: ResolvedOptions, code: string, message: string): void {
  const codes = emitted.get(options.topology) ?? new Set<string>();
  emitted.set(options.topology, codes);
  if (codes.has(code)) return;
  codes.add(code);
  process.emitWarning(message, { code });
}
