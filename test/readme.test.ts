import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS } from '../src/index.js';

const test = suite('readme');
const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');
/** The README and the pages it sends readers to: what a link may point at must exist. */
const pages = [
  'README.md',
  'bench/README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((file) => file.endsWith('.md'))
    .map((file) => `docs/${file}`),
];
/** The README is what npm and GitHub show first: the details belong in docs/. */
const MAX_README_BYTES = 20_480;

/** A page's text without its fenced code blocks, where `](` and `#` mean something else. */
function prose(text: string): string {
  return text.replace(/^```[\s\S]*?^```/gm, '');
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorsOf(text: string): Set<string> {
  const headings = prose(text).match(/^#{1,6} .+$/gm) ?? [];
  return new Set(
    headings.map((heading) =>
      heading
        .replace(/^#+ /, '')
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    ),
  );
}

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

test('the README tells a user to npm install tracklock before any contributor command', () => {
  const install = readme.indexOf('npm install tracklock');
  assert.ok(install >= 0, 'no `npm install tracklock`');
  for (const command of ['npm ci', 'npm test', 'npm run']) {
    const at = readme.indexOf(command);
    assert.ok(at < 0 || install < at, `\`${command}\` comes before \`npm install tracklock\``);
  }
});

test('the README stays a first read, its details in docs/', () => {
  const bytes = Buffer.byteLength(readme);
  assert.ok(bytes <= MAX_README_BYTES, `README.md is ${bytes} bytes: move details to docs/`);
});

test('no page prints a count of passed tests, which goes stale', () => {
  for (const page of pages) {
    const count = /\b\d+ passed\b/.exec(readFileSync(join(root, page), 'utf8'));
    assert.not.ok(count, `${page} says "${count?.[0]}"`);
  }
});

test('every relative link of the README and docs/ points at a file and heading that exist', () => {
  for (const page of pages) {
    const text = readFileSync(join(root, page), 'utf8');
    const targets = [...prose(text).matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1] ?? '');
    for (const target of targets.filter((link) => !/^[a-z]+:/.test(link))) {
      const [path = '', anchor] = target.split('#');
      const file = path ? join(root, dirname(page), path) : join(root, page);
      assert.ok(existsSync(file), `${page} links to ${target}: no ${relative(root, file)}`);
      if (anchor !== undefined) {
        const anchors = anchorsOf(readFileSync(file, 'utf8'));
        assert.ok(anchors.has(anchor), `${page} links to ${target}: no such heading`);
      }
    }
  }
});

test('every source and test path the README and docs/ name exists', () => {
  for (const page of pages) {
    const text = readFileSync(join(root, page), 'utf8');
    for (const [, path = ''] of text.matchAll(/`((?:src|test)\/[\w./-]*)`/g)) {
      assert.ok(existsSync(join(root, path)), `${page} names ${path}, which does not exist`);
    }
  }
});

test('the map of src/ in docs/how-it-works.md names every source file, under its folder', () => {
  const map = readFileSync(join(root, 'docs/how-it-works.md'), 'utf8').split(
    '## Where things are',
  )[1];
  assert.ok(map, 'docs/how-it-works.md has a "Where things are" section');
  const folders = map.split(/^\*\*`src\/(\w+)\/`/m);
  for (const folder of ['lock', 'redis', 'shared', 'testing']) {
    const at = folders.indexOf(folder);
    assert.ok(at > 0, `the map has a paragraph for src/${folder}/`);
    const listed = folders[at + 1] ?? '';
    for (const file of readdirSync(join(root, 'src', folder))) {
      assert.ok(listed.includes(`\`${file}\``), `the map does not list src/${folder}/${file}`);
    }
  }
});

test.run();
