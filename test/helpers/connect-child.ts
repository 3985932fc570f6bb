/**
 * Runs a createLocker that is expected to fail, in a process of its own, and prints as JSON its
 * error's code and the handles left right after the rejection (besides the process's own
 * stdio): nothing may keep the process alive once createLocker has given up. argv: the locker
 * options, as JSON.
 */
import { createLocker, type LockerOptions } from '../../src/index.js';
import { handleCheck } from './handles.js';

const options = JSON.parse(process.argv[2] as string) as LockerOptions;
const handles = handleCheck();
const error = await createLocker(options).then(
  async (locker) => {
    await locker.close();
    return undefined;
  },
  (e: unknown) => e,
);
const left = await handles.left();
console.log(
  JSON.stringify({
    code: (error as { code?: string } | undefined)?.code ?? String(error),
    handles: left,
  }),
);
