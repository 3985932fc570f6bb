import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS } from '../src/index.js';

const test = suite('readme');
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

test('the README options table states every default in DEFAULTS', () => {
  for (const [option, value] of Object.entries(DEFAULTS)) {
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${option}\` |`));
    assert.ok(row, `no row for ${option}`);
    const shown = typeof value === 'string' ? `'${value}'` : String(value);
    const cell = row.split('|')[2] ?? '';
    assert.ok(
      cell.includes(`\`${shown}\``),
      `${option}: README says ${cell.trim()}, DEFAULTS ${shown}`,
    );
  }
});

test('the README shows the two set-up commands', () => {
  assert.ok(readme.includes('npm ci && npm run bench'));
  assert.ok(readme.includes('npm test'));
});

test.run();
