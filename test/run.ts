/**
 * Runs every test file with uvu in this process and ends with one line CI can read:
 * "N passed, N failed". Exits non-zero when a test fails.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

(globalThis as { UVU_DEFER?: number }).UVU_DEFER = 1;
const { exec } = await import('uvu');

const dir = fileURLToPath(new URL('.', import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((file) => file.endsWith('.test.ts'))
  .filter((file) => only.length === 0 || only.some((name) => file.includes(name)))
  .sort();
// What uvu's own CLI does: one queue entry per file, filled by that file's suites.
const globals = globalThis as { UVU_QUEUE?: unknown[][]; UVU_INDEX?: number };
for (const [index, file] of files.entries()) {
  globals.UVU_QUEUE?.push([file]);
  globals.UVU_INDEX = index;
  await import(pathToFileURL(`${dir}${file}`).href);
}

// uvu keeps its counts to itself and prints them; read them back from what it writes.
let printed = '';
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
  printed += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
  return write(chunk, ...rest);
}) as typeof process.stdout.write;
await exec();
process.stdout.write = write;

// biome-ignore lint/suspicious/noControlCharactersInRegex: strip uvu's colours
const plain = printed.replace(/\u001b\[[0-9;]*m/g, '');
const count = (label: string) =>
  Number(new RegExp(`${label}:\\s+(\\d+)`).exec(plain)?.[1] ?? Number.NaN);
const [total, passed, skipped] = [count('Total'), count('Passed'), count('Skipped')];
const failed = total - passed - skipped;
if (!Number.isFinite(failed) || total === 0) {
  console.log('0 passed, 1 failed');
  console.error('could not read the test counts, or no test ran');
  process.exit(1);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
