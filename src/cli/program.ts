import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_GRACE_MS, exec } from './exec.js';
import { EXIT } from './exit-codes.js';
import { addLockerFlags, inFlagTerms, lockerOptions, milliseconds } from './locker-flags.js';
import { openPlaces, type Places } from './places.js';
import { forceRelease } from './release.js';
import { say } from './say.js';
import { formatStatus, readStatus } from './status.js';

// src/cli/ and dist/cli/ both sit two folders below package.json.
const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

const EXEC_HELP = `
Exit status: the command's own, or 128 + the signal that killed it; else
  ${EXIT.notAcquired}   the lock was not acquired (--no-wait, or --wait ran out)
  ${EXIT.lost}   the lock was lost, or held for --max-hold, while the command ran
  ${EXIT.usage}   bad arguments
  ${EXIT.unavailable}   Redis could not be reached, or failed a request
  ${EXIT.notExecutable}  the command is not executable; ${EXIT.notFound}: not found

The command runs in a process group of its own (unless --foreground), as with
timeout(1). SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR2, SIGALRM and SIGPIPE are
passed on to that group; the lock is released when the command exits. When the
lock is lost or held for --max-hold, the group gets SIGTERM, then SIGKILL after
--grace; at --max-hold the lock is released only once the command has exited.
The fencing token is in TRACKLOCK_TOKEN.

Example:
  tracklock exec nightly-report --no-wait -- ./report.sh --since yesterday`;

/** The `tracklock` command line. Its actions set `process.exitCode`. */
export function createProgram(): Command {
  const program = new Command('tracklock')
    .description('A distributed lock on Redis, from the shell (docs/cli.md).')
    .version(version)
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      `
The server is REDIS_URL, or --url (default redis://localhost:6379).
Each command has its own --help: tracklock exec --help

Examples:
  tracklock exec nightly-report -- ./report.sh
  tracklock status nightly-report --json
  tracklock release --force nightly-report`,
    );

  addLockerFlags(
    program
      .command('exec')
      .summary('run a command while holding a lock (a distributed flock)')
      .description('Run COMMAND while holding lock NAME: waits for the lock, then runs it.')
      .usage('[options] <name> -- <command> [args...]')
      .argument('<name>', 'the lock')
      .argument('<command...>', 'the command and its arguments, after --')
      .addOption(
        new Option(
          '--wait <ms>',
          'give up waiting after so long (default: wait; Infinity: wait)',
        ).argParser(milliseconds(0, true)),
      )
      .option('--no-wait', 'try once, and exit 75 if the lock is held')
      .addOption(
        new Option('--grace <ms>', 'from SIGTERM to SIGKILL when the lock is lost or at --max-hold')
          .default(DEFAULT_GRACE_MS)
          .argParser(milliseconds(0, false)),
      )
      .option(
        '--foreground',
        "run the command in tracklock's process group (interactive commands): signals then reach it, not its children",
      )
      .addHelpText('after', EXEC_HELP),
    true,
  ).action(async (name: string, command: string[], options, self: Command) => {
    const { maxHoldMs = Infinity, ...locker } = lockerOptions(self);
    const wait = options.wait === Infinity ? true : (options.wait ?? true);
    process.exitCode = await exec(
      name,
      command,
      { wait, grace: options.grace, maxHold: maxHoldMs, foreground: options.foreground === true },
      locker,
    );
  });

  addLockerFlags(
    program
      .command('status')
      .summary("show a lock's keys, holder, TTLs, fencing token and queue")
      .description("Show lock NAME's keys (holder's value, TTL), fencing token and queue.")
      .argument('<name>', 'the lock')
      .option('--json', 'print JSON (tokens as strings)'),
    false,
  ).action(async (name: string, options, self: Command) => {
    await withPlaces(name, self, async (places) => {
      const status = await readStatus(name, places);
      console.log(options.json ? JSON.stringify(status, null, 2) : formatStatus(status));
      return 0;
    });
  });

  addLockerFlags(
    program
      .command('release')
      .summary("delete a stuck lock's keys (an operator's last resort)")
      .description(
        "Delete lock NAME's keys, whoever holds them: the holder's signal aborts. The fence and the queue stay.",
      )
      .argument('<name>', 'the lock')
      .requiredOption('--force', 'say that you mean to take the lock from its holder')
      .option('--yes', 'do not ask for confirmation (needed when stdin is not a terminal)'),
    false,
  ).action(async (name: string, options, self: Command) => {
    await withPlaces(name, self, (places) => forceRelease(name, places, options.yes === true));
  });
  return program;
}

async function withPlaces(
  name: string,
  command: Command,
  use: (places: Places) => Promise<number>,
) {
  const places = await openPlaces(name, lockerOptions(command));
  try {
    process.exitCode = await use(places);
  } finally {
    await places.close();
  }
}

/** Run the command line `argv` (as `process.argv`) and resolve with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await createProgram().parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (error) {
    // Commander has printed its own (help, version, usage errors).
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT.usage;
    say(inFlagTerms(error instanceof Error ? error.message : String(error)));
    return error instanceof TypeError || error instanceof RangeError
      ? EXIT.usage
      : EXIT.unavailable;
  }
}
