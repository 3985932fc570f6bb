// One reaper for every child of a test run: the one that tracklock/testing's servers use.
export { killOnExit } from '../../src/testing/spawn.js';
