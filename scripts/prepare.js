// npm's `prepare`: builds dist/ with TypeScript, a devDependency. npm runs it after `npm ci`
// here, before `npm pack`, and also when an app runs `npm install ../tracklock` on a clone;
// in that last case npm installs none of the clone's devDependencies, so rather than a bare
// "tsc: not found" say what to do.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  const here = process.cwd();
  console.error(
    [
      `tracklock: cannot build dist/ in ${here}: TypeScript, a devDependency, is not installed.`,
      'To install tracklock from a clone, build a tarball there and install that:',
      `  cd ${here} && npm ci && npm pack`,
      '  then, in your app: npm install <that directory>/tracklock-<version>.tgz',
      '(npm may leave a link to the clone in your node_modules: the install above replaces it.)',
    ].join('\n'),
  );
  process.exit(1);
}
const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
  stdio: 'inherit',
});
process.exit(build.status ?? 1);
