import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULTS, type LockerOptions } from '../shared/options.js';
import { MAX_TIMER_MS } from '../shared/timing.js';

/**
 * One locker option as a flag: the option's name in kebab case, less its `Ms` (the flag says
 * `<ms>`), so `keyValidityMs` is `--key-validity <ms>`. The library checks the value and names
 * the option when it is wrong (`inFlagTerms` names the flag instead); the flag only reads it
 * as a number, unless `parse` checks it here.
 */
export interface LockerFlag {
  readonly option: keyof typeof DEFAULTS;
  readonly flags: string;
  readonly description: string;
  /** The option's value from commander's (when the flag's value is not the option's own). */
  readonly toOption?: (value: unknown) => unknown;
  /** Reads the flag's text instead of `number`: for a value the CLI uses itself. */
  readonly parse?: (text: string) => unknown;
}

/** The tuning options, every key of `DEFAULTS`: what `exec` takes (status needs only layout). */
export const LOCKER_FLAGS: readonly LockerFlag[] = [
  { option: 'keyPrefix', flags: '--key-prefix <prefix>', description: 'prefix of every key' },
  {
    option: 'keyMajority',
    flags: '--key-majority <n>',
    description: 'the lock needs n of 2n-1 keys (default: 2, with --node one key per node)',
  },
  {
    option: 'keyValidityMs',
    flags: '--key-validity <ms>',
    description: 'life of a key unextended',
  },
  {
    option: 'extendIntervalMs',
    flags: '--extend-interval <ms>',
    description: 'how often a held lock extends its keys (default: key validity / 2)',
  },
  {
    option: 'tryNextAfterMs',
    flags: '--try-next-after <ms>',
    description: 'first pause after a failed request to Redis, doubling',
  },
  {
    option: 'tracking',
    flags: '--tracking <mode>',
    description: 'hear of changes by pushes (on), polling (off), or what the server allows',
  },
  {
    option: 'pollIntervalMs',
    flags: '--poll-interval <ms>',
    description: "polling: a waiter's longest sleep",
  },
  {
    option: 'checkIntervalMs',
    flags: '--check-interval <ms>',
    description: 'polling: how often a held lock reads its keys',
  },
  {
    option: 'noLoopTracking',
    flags: '--loop-tracking',
    description: 'hear our own writes too (noLoopTracking: false; default: NOLOOP)',
    toOption: (value) => !value,
  },
  {
    option: 'fallbackSetPx',
    flags: '--fallback-set-px',
    description: 'relative expiries (PX), for Redis < 6.2 or a skewed clock (default: PXAT)',
  },
  {
    option: 'queue',
    flags: '--no-queue',
    description: 'race for the lock instead of queueing in arrival order (default: queue)',
  },
  {
    option: 'localHandoffs',
    flags: '--local-handoffs <n>',
    description: 'passes in a row to a waiter of the same process (Infinity: no limit)',
  },
  {
    option: 'maxHoldMs',
    flags: '--max-hold <ms>',
    description:
      'stop the command after holding the lock this long, then release it (Infinity: never)',
    // exec's own timer (see ExecOptions.maxHold), not the library's.
    parse: milliseconds(1, true),
  },
  {
    option: 'driftFactor',
    flags: '--drift-factor <share>',
    description: 'share of the validity by which the lock ends before its keys expire',
  },
  {
    option: 'commandTimeoutMs',
    flags: '--command-timeout <ms>',
    description: 'longest wait for one reply from Redis',
  },
  {
    option: 'connectTimeoutMs',
    flags: '--connect-timeout <ms>',
    description: 'longest wait to connect',
  },
];

/**
 * The flags `status` and `release` read too: they need where the keys are and their names,
 * and how long to wait for a server (a frozen one must not keep them waiting for ever).
 */
const LAYOUT: ReadonlySet<string> = new Set([
  'keyPrefix',
  'keyMajority',
  'commandTimeoutMs',
  'connectTimeoutMs',
]);

/**
 * Add the server flags, and the layout flags or (`all`) every locker flag, to `command`.
 * `status` and `release` read the keys with plain clients of their own: one server or nodes.
 */
export function addLockerFlags(command: Command, all: boolean): Command {
  command
    .optionsGroup('Where the keys are (one of):')
    .addOption(new Option('--url <url>', 'the Redis server').env('REDIS_URL'))
    .addOption(
      new Option('--node <url>', 'one of several independent servers (Redlock); repeat')
        .argParser(collect)
        .conflicts(['cluster', 'sentinel']),
    );
  if (all) {
    command
      .addOption(
        new Option('--cluster <url>', 'a Redis Cluster node to discover the cluster from; repeat')
          .argParser(collect)
          .conflicts('sentinel'),
      )
      .addOption(
        new Option(
          '--sentinel <host:port>',
          'a Redis Sentinel to find the primary; repeat',
        ).argParser(collect),
      )
      .addOption(new Option('--sentinel-name <name>', "the primary's name at the sentinels"));
  }
  command.optionsGroup(
    all ? 'Locker options (LockerOptions, less "Ms"):' : 'Key layout and timeouts:',
  );
  for (const flag of LOCKER_FLAGS) {
    if (!all && !LAYOUT.has(flag.option)) continue;
    command.addOption(flagOption(flag));
  }
  return command;
}

function flagOption(flag: LockerFlag): Option {
  const fallback = DEFAULTS[flag.option];
  const shown = typeof fallback === 'boolean' || flag.description.includes('default:');
  const option = new Option(
    flag.flags,
    shown ? flag.description : `${flag.description} (default: ${String(fallback)})`,
  );
  if (flag.option === 'tracking') return option.choices(['auto', 'on', 'off']);
  if (flag.option === 'keyPrefix' || !flag.flags.includes('<')) return option;
  return option.argParser(flag.parse ?? number);
}

/** The `LockerOptions` the flags of `command` (and `REDIS_URL`) say. */
export function lockerOptions(command: Command): LockerOptions {
  const given = command.opts();
  const options: Record<string, unknown> = {};
  for (const flag of LOCKER_FLAGS) {
    const name = command.options.find((each) => each.flags === flag.flags)?.attributeName();
    // Commander gives `--no-queue` a default of true: only a flag on the command line counts.
    if (name === undefined || given[name] === undefined) continue;
    if (command.getOptionValueSource(name) === 'default') continue;
    options[flag.option] = flag.toOption ? flag.toOption(given[name]) : given[name];
  }
  const nodes = given.node as string[] | undefined;
  const cluster = given.cluster as string[] | undefined;
  const sentinels = given.sentinel as string[] | undefined;
  if (nodes) options.nodes = nodes;
  else if (cluster) options.cluster = { rootNodes: cluster.map((url) => ({ url })) };
  else if (sentinels) options.sentinel = sentinel(sentinels, given.sentinelName);
  else if (given.sentinelName !== undefined) {
    throw new TypeError('--sentinel-name names the primary at the --sentinel servers: give them');
  }
  // REDIS_URL is a default for one server; a topology given by flags comes first.
  const fromEnv = command.getOptionValueSource('url') === 'env';
  if (given.url !== undefined && !(fromEnv && (nodes || cluster || sentinels))) {
    options.url = given.url;
  }
  return options as LockerOptions;
}

function sentinel(addresses: readonly string[], name: unknown) {
  if (typeof name !== 'string') {
    throw new TypeError('--sentinel needs --sentinel-name, the name of the primary');
  }
  const sentinelRootNodes = addresses.map((address) => {
    const colon = address.lastIndexOf(':');
    const port = Number(address.slice(colon + 1));
    if (colon < 1 || !Number.isInteger(port)) {
      throw new TypeError(`--sentinel ${address}: expected host:port`);
    }
    return { host: address.slice(0, colon), port };
  });
  return { name, sentinelRootNodes };
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * A flag of whole ms from `min` to setTimeout's largest delay (Node would fire a larger or
 * fractional one after 1 ms), or `Infinity` when `infinite` says it means "never".
 */
export function milliseconds(min: number, infinite: boolean): (text: string) => number {
  return (text) => {
    const value = number(text);
    if (infinite && value === Infinity) return value;
    if (!Number.isInteger(value) || value < min || value > MAX_TIMER_MS) {
      const or = infinite ? ', or Infinity' : '';
      throw new InvalidArgumentError(`expected whole ms from ${min} to ${MAX_TIMER_MS}${or}`);
    }
    return value;
  };
}

/**
 * `message` (the library's, naming options) with each option that has a `<value>` flag named
 * by its flag: `--wait -1` should not answer "waitTimeoutMs must be…".
 */
export function inFlagTerms(message: string): string {
  let said = message;
  for (const { option, flags } of LOCKER_FLAGS) {
    if (flags.includes('<') && /[A-Z]/.test(option)) {
      said = said.replace(new RegExp(`\\b${option}\\b`, 'g'), flags.split(' ')[0] as string);
    }
  }
  return said;
}

/** A flag's number: any number, or Infinity; the library checks its range. */
export function number(text: string): number {
  const value = Number(text);
  if (text.trim() === '' || Number.isNaN(value)) throw new InvalidArgumentError('not a number');
  return value;
}
